"""Settings: bad environment values fail at start-up with a message naming the variable."""

import os
import runpy
import subprocess
import sys
from unittest import mock

import pytest
from django.core.exceptions import ImproperlyConfigured

from tests import ROOT


def load_settings(**env: str) -> subprocess.CompletedProcess:
    """Run the settings module afresh, in this process, with ``env`` on top of our environment;
    the result reads as the start-up of a fresh interpreter would (exit code, traceback's last
    line on stderr). In-process, since a new interpreter per case cost about 0.4 s."""
    with mock.patch.dict(os.environ, env):
        try:
            runpy.run_path(str(ROOT / "realestate" / "settings.py"))
        except ImproperlyConfigured as exc:
            return subprocess.CompletedProcess([], 1, "", f"ImproperlyConfigured: {exc}\n")
    return subprocess.CompletedProcess([], 0, "", "")


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("DEBUG", "maybe", "DEBUG must be true or false"),
        ("AGENCY_TIMEZONE", "Mars/Olympus", "AGENCY_TIMEZONE must be an IANA zone"),
        ("LLM_BASE_URL", "gpu-host:8000", "LLM_BASE_URL must be an http:// or https:// URL"),
        ("TURN_BUDGET", "soon", "TURN_BUDGET must be a number"),
        ("TURN_BUDGET", "0", "TURN_BUDGET must be at least"),
        ("LLM_MAX_IN_FLIGHT", "0", "LLM_MAX_IN_FLIGHT must be at least"),
        ("LLM_PROMPT_LAYOUT", "random", "LLM_PROMPT_LAYOUT must be shared_prefix or system_first"),
        ("BUSINESS_HOURS", "17:00-09:00", "BUSINESS_HOURS must open before it closes"),
        ("BUSINESS_DAYS", "mon,funday", "BUSINESS_DAYS must list weekdays"),
        ("RETENTION_DAYS", "0", "RETENTION_DAYS must be at least 1"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL must be a redis://"),
        ("CHANNEL_CAPACITY", "5", "CHANNEL_CAPACITY must be at least 10"),
        ("STAFF_HOURS", "9-5", "STAFF_HOURS must look like 09:00-17:00"),
        ("STAFF_DAYS", "weekends", "STAFF_DAYS must list weekdays"),
        ("HANDOFF_ALERT_EMAIL", "desk@agency.example, nobody", "HANDOFF_ALERT_EMAIL must be"),
        ("HANDOFF_ALERT_MINUTES", "0", "HANDOFF_ALERT_MINUTES must be at least"),
        ("SITE_URL", "chat.agency.example", "SITE_URL must be an http:// or https:// URL"),
        ("EMAIL_USE_TLS", "sometimes", "EMAIL_USE_TLS must be true or false"),
        ("DATABASE_URL", "mysql://db/app", "DATABASE_URL must be a postgresql:// URL"),
        ("DATABASE_URL", "not a url", "DATABASE_URL"),
        ("CHAT_ALLOWED_ORIGINS", "www.agency.example", "CHAT_ALLOWED_ORIGINS must list origins"),
        ("CHAT_ALLOWED_ORIGINS", "https://a.example/chat", "CHAT_ALLOWED_ORIGINS must list"),
        ("CHAT_TOKEN_MAX_AGE", "10", "CHAT_TOKEN_MAX_AGE must be at least"),
        ("METRICS_ALLOWED_IPS", "127.0.0.1,prometheus", "METRICS_ALLOWED_IPS must list IP"),
        ("DB_POOL_MAX_SIZE", "-1", "DB_POOL_MAX_SIZE must be at least 0"),
        ("DB_POOL_TIMEOUT", "0", "DB_POOL_TIMEOUT must be at least"),
        ("CONN_MAX_AGE", "60", "CONN_MAX_AGE must be 0 while the connection pool is on"),
        ("CHAT_RATE_LIMIT_CONNECTION", "lots", "CHAT_RATE_LIMIT_CONNECTION must be rate limits"),
        ("CHAT_RATE_LIMIT_IP", "0/minute", "CHAT_RATE_LIMIT_IP must be rate limits"),
        ("CHAT_RATE_LIMIT_IP", "600/minute;x", "CHAT_RATE_LIMIT_IP must be rate limits"),
        ("CHAT_MAX_SOCKETS_PER_IP", "-1", "CHAT_MAX_SOCKETS_PER_IP must be at least 0"),
        ("LLM_KEY_VARIABLES", "llm-key", "LLM_KEY_VARIABLES must list variable names"),
        ("LLM_KEY_VARIABLES", "LLM_API_KEY,SECRET_KEY", "must not name the app's own secrets"),
        ("LLM_KEY_VARIABLES", "DATABASE_URL", "must not name the app's own secrets"),
        ("LLM_ALLOWED_HOSTS", "gpu-host:8000", "LLM_ALLOWED_HOSTS must list host names"),
        ("LLM_ALLOWED_HOSTS", "http://gpu-host", "LLM_ALLOWED_HOSTS must list host names"),
        ("LLM_ALLOWED_HOSTS", "gpu-host", "LLM_ALLOWED_HOSTS must include the host of LLM_BASE"),
    ],
)
def test_a_bad_value_fails_at_start_up_naming_the_variable(name, value, says):
    result = load_settings(**{name: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and says in result.stderr


def test_good_values_load():
    result = load_settings(
        DEBUG="yes", AGENCY_TIMEZONE="Europe/Berlin", TURN_BUDGET="2.5",
        BUSINESS_DAYS="Mon,Tue,Sat", STAFF_HOURS="08:00-20:00",
        HANDOFF_ALERT_EMAIL="desk@agency.example, ops@agency.example",
        METRICS_ALLOWED_IPS="127.0.0.1, ::1, 10.0.0.0/8", DB_POOL_MAX_SIZE="1",
        CHAT_RATE_LIMIT_CONNECTION="40 per minute; 400/hour", CHAT_RATE_LIMIT_IP="off",
        CHAT_MAX_SOCKETS_PER_IP="0",
        LLM_KEY_VARIABLES="LLM_API_KEY, ANTHROPIC_API_KEY",
        LLM_ALLOWED_HOSTS="127.0.0.1,API.anthropic.com,[::1]",
    )
    assert result.returncode == 0, result.stderr


def test_conn_max_age_applies_when_the_pool_is_off():
    result = load_settings(DB_POOL_MAX_SIZE="0", CONN_MAX_AGE="60")
    assert result.returncode == 0, result.stderr


def test_check_deploy_refuses_the_local_secret_key_and_debug():
    from realestate.settings import LOCAL_SECRET_KEY

    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={**os.environ, "SECRET_KEY": LOCAL_SECRET_KEY, "DEBUG": "true"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "security.W009" in result.stderr  # SECRET_KEY
    assert "security.W018" in result.stderr  # DEBUG


def test_check_deploy_passes_with_production_settings():
    env = {
        "SECRET_KEY": "Kq8#vT2$wY7!pR4@zL1%-a-long-random-production-key-9fJ3",
        "DEBUG": "false",
        "HTTPS": "true",
        "ALLOWED_HOSTS": "chat.agency.example",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


INTEGER_SETTINGS = [
    "CHANNEL_CAPACITY", "DB_POOL_MAX_SIZE", "CONN_MAX_AGE", "CALL_MINUTES",
    "BOOKING_LEAD_MINUTES", "BOOKING_HORIZON_DAYS", "EMAIL_PORT", "LLM_MAX_IN_FLIGHT",
    "LLM_MAX_RETRIES", "RETENTION_DAYS", "CHAT_TOKEN_MAX_AGE", "CHAT_MAX_SOCKETS_PER_IP",
]


@pytest.mark.parametrize("name", INTEGER_SETTINGS)
def test_a_fraction_for_a_whole_number_is_refused_naming_the_variable(name):
    # int(env_float(...)) made 7.9 minutes 7 without a word; 1000.5 is above every minimum.
    result = load_settings(**{name: "1000.5"})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert f"{name} must be a whole number, not '1000.5'" in result.stderr


def test_call_minutes_7_9_is_refused():
    result = load_settings(CALL_MINUTES="7.9")
    assert result.returncode != 0
    assert "CALL_MINUTES must be a whole number, not '7.9'" in result.stderr


def settings_values(**env: str) -> dict:
    """The settings module's values, run afresh in this process with ``env`` on top of our
    environment; a value of None removes that variable."""
    with mock.patch.dict(os.environ, {k: v for k, v in env.items() if v is not None}):
        for name in [k for k, v in env.items() if v is None]:
            os.environ.pop(name, None)
        return runpy.run_path(str(ROOT / "realestate" / "settings.py"))


@pytest.mark.parametrize("key", [None, "django-insecure-local-only-never-use-in-production"])
def test_without_debug_the_public_local_secret_key_stops_start_up(key):
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY is unset"):
        settings_values(DEBUG="false", SECRET_KEY=key)
    assert settings_values(DEBUG="true", SECRET_KEY=key)["DEBUG"] is True  # make run's case


def test_the_local_tools_give_their_processes_a_secret_key_of_their_own(tmp_path, monkeypatch):
    from realestate.dev.localkey import use_local_secret_key

    monkeypatch.delenv("SECRET_KEY", raising=False)
    use_local_secret_key(tmp_path / "key")
    first = os.environ["SECRET_KEY"]
    monkeypatch.delenv("SECRET_KEY")
    use_local_secret_key(tmp_path / "key")
    assert os.environ["SECRET_KEY"] == first and len(first) >= 50  # kept across runs
    assert (tmp_path / "key").stat().st_mode & 0o077 == 0
    assert settings_values(DEBUG="false")["SECRET_KEY"] == first


def test_https_alone_sends_hsts_for_this_host_only():
    values = settings_values(HTTPS="true")
    assert values["SECURE_HSTS_SECONDS"] > 0
    assert values["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is False
    assert values["SECURE_HSTS_PRELOAD"] is False
    values = settings_values(HTTPS="true", HSTS_INCLUDE_SUBDOMAINS="true", HSTS_PRELOAD="true")
    assert values["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is values["SECURE_HSTS_PRELOAD"] is True
    with pytest.raises(ImproperlyConfigured, match="HSTS_PRELOAD needs HSTS_INCLUDE_SUBDOMAINS"):
        settings_values(HTTPS="true", HSTS_PRELOAD="true")


def test_plain_management_commands_work_in_a_checkout_with_a_local_key(tmp_path):
    """Where make run or make test made ``.local-secret-key``, ``manage.py`` uses it: the
    README's plain ``.venv/bin/python manage.py ...`` works with nothing set."""
    from realestate.dev.localkey import KEY_FILE, use_local_secret_key

    if not KEY_FILE.exists():
        use_local_secret_key()  # what make test did (devdb); the environment keeps its own
    env = {name: value for name, value in os.environ.items()
           if name not in ("SECRET_KEY", "DEBUG")}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr

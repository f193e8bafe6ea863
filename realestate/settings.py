"""Settings, read from environment variables only.

Every variable is listed with its default in ``.env.example`` and in README.md. A bad value
raises ``ImproperlyConfigured`` at start-up, naming the variable. Defaults are safe for a local
run; ``manage.py check --deploy`` refuses the local SECRET_KEY and DEBUG in production.
"""

from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dj_database_url
import phonenumbers
from django.core.exceptions import ImproperlyConfigured

from realestate.env import (
    env_bool,
    env_emails,
    env_float,
    env_hours,
    env_int,
    env_networks,
    env_origins,
    env_rate_limits,
    env_str,
    env_url,
    env_weekdays,
)

BASE_DIR = Path(__file__).resolve().parent.parent

LOCAL_SECRET_KEY = "django-insecure-local-only-never-use-in-production"
SECRET_KEY = env_str("SECRET_KEY", LOCAL_SECRET_KEY)
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = [
    host.strip()
    for host in env_str("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")
    if host.strip()
]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "channels",
    "agent.apps.AgentConfig",
    "listings.apps.ListingsConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "realestate.urls"
ASGI_APPLICATION = "realestate.asgi.application"
# Unset: one process, with the channel layer in its memory (`make run`). Set (redis://host:6379/0,
# rediss:// for TLS): several app processes share the channel layer through Redis.
REDIS_URL = env_str("REDIS_URL")
# Messages one socket's channel may hold in Redis. channels_redis drops group messages to a
# full channel, silently at its default of 100 (django/channels#1244); agent.live counts and
# logs each drop (chat_channel_layer_dropped_messages_total). A visitor's socket gets about 4
# frames a turn and reads them within milliseconds, so 1,000 only fills behind a stuck worker.
CHANNEL_CAPACITY = env_int("CHANNEL_CAPACITY", 1000, minimum=10)
if REDIS_URL:
    if urlsplit(REDIS_URL).scheme not in ("redis", "rediss", "unix"):
        raise ImproperlyConfigured(
            f"REDIS_URL must be a redis://, rediss:// or unix:// URL, not {REDIS_URL!r}"
        )
    CHANNEL_LAYERS = {
        "default": {
            # channels_redis, closing the sockets when Redis fails (they reconnect and rejoin)
            "BACKEND": "agent.live.ChatChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "capacity": CHANNEL_CAPACITY, "prefix": "chat"},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Unset: the embedded PostgreSQL that `make run` starts, over its socket in .pgdata/
# (``python -m realestate.dev.devdb CMD`` starts it for any other command).
DATABASE_URL = env_str(
    "DATABASE_URL", f"postgresql://postgres@/realestate?host={BASE_DIR / '.pgdata'}"
)
# Connections per process come from psycopg's pool, at most DB_POOL_MAX_SIZE; a request waits
# up to DB_POOL_TIMEOUT seconds for a free one, then fails (psycopg_pool.PoolTimeout). Persistent
# connections (CONN_MAX_AGE) are off with the pool: under ASGI each request runs its sync code in
# a new thread, and each thread kept its own connection open until PostgreSQL ran out
# (bench/README.md; Django's docs, Databases > Persistent connections). DB_POOL_MAX_SIZE=0 turns
# the pool off (e.g. behind PgBouncer): a connection per request, or CONN_MAX_AGE seconds' reuse.
DB_POOL_MAX_SIZE = env_int("DB_POOL_MAX_SIZE", 10, minimum=0)
DB_POOL_TIMEOUT = env_float("DB_POOL_TIMEOUT", 10, minimum=0.1)
CONN_MAX_AGE = env_int("CONN_MAX_AGE", 0, minimum=0)
if DB_POOL_MAX_SIZE and CONN_MAX_AGE:
    raise ImproperlyConfigured(
        "CONN_MAX_AGE must be 0 while the connection pool is on (DB_POOL_MAX_SIZE > 0)"
    )
try:
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL, conn_max_age=CONN_MAX_AGE, conn_health_checks=True
        )
    }
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from None
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("DATABASE_URL must be a postgresql:// URL")
if DB_POOL_MAX_SIZE:
    # min_size: connections kept open when idle (psycopg_pool's default is 4, more than a
    # small max_size allows). With CONN_HEALTH_CHECKS (on above), Django gives the pool
    # check=ConnectionPool.check_connection: a connection is checked as it leaves the pool, and
    # one that died with a PostgreSQL restart is replaced instead of failing the request
    # (without the pool, the same setting checks a kept connection before each request).
    # reconnect_timeout: while PostgreSQL is down the pool retries in the background after 1,
    # 2, 4, 8, 16, 32 s ... for up to this long, and a request in the meantime waits for the next
    # try; psycopg_pool's default of 300 s kept the app away for 24 s after a 35 s outage had
    # ended. With 10 s the tries come at most 4 s apart, and once it gives up the next request
    # starts again at once: back 0.3 s after the same outage (bench/README.md, Faults).
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": min(2, DB_POOL_MAX_SIZE),
        "max_size": DB_POOL_MAX_SIZE,
        "timeout": DB_POOL_TIMEOUT,
        "reconnect_timeout": 10,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AGENCY_TIMEZONE = env_str("AGENCY_TIMEZONE", "America/New_York")
try:
    ZoneInfo(AGENCY_TIMEZONE)
except (ZoneInfoNotFoundError, ValueError):
    raise ImproperlyConfigured(
        f"AGENCY_TIMEZONE must be an IANA zone like America/New_York, not {AGENCY_TIMEZONE!r}"
    ) from None
TIME_ZONE = AGENCY_TIMEZONE
USE_TZ = True
LANGUAGE_CODE = "en-us"
USE_I18N = True

# Hours when realtors take calls, in the agency's time zone.
BUSINESS_HOURS = env_hours("BUSINESS_HOURS", "09:00-17:00")
BUSINESS_DAYS = env_weekdays("BUSINESS_DAYS", "mon,tue,wed,thu,fri")
CALL_MINUTES = env_int("CALL_MINUTES", 30, minimum=5)  # a new realtor's call length
# A call must start at least this many minutes from now, and at most this many days ahead.
BOOKING_LEAD_MINUTES = env_int("BOOKING_LEAD_MINUTES", 60, minimum=0)
BOOKING_HORIZON_DAYS = env_int("BOOKING_HORIZON_DAYS", 60, minimum=1)
# Region for phone numbers written without a country code (ISO 3166 code, e.g. US, GB).
PHONE_REGION = env_str("PHONE_REGION", "US").upper()
if PHONE_REGION not in phonenumbers.SUPPORTED_REGIONS:
    raise ImproperlyConfigured(f"PHONE_REGION must be a region code like US, not {PHONE_REGION!r}")

# Hours when staff answer handoffs (default: the business hours). A handoff queued outside them
# tells the visitor when someone will answer.
STAFF_HOURS = env_hours("STAFF_HOURS", env_str("BUSINESS_HOURS", "09:00-17:00"))
STAFF_DAYS = env_weekdays("STAFF_DAYS", env_str("BUSINESS_DAYS", "mon,tue,wed,thu,fri"))

# Email to these addresses about a handoff queued longer than HANDOFF_ALERT_MINUTES, once per
# handoff, sent by ``manage.py notify_overdue_handoffs`` (cron or a systemd timer). Empty: off.
HANDOFF_ALERT_EMAIL = env_emails("HANDOFF_ALERT_EMAIL")
HANDOFF_ALERT_MINUTES = env_float("HANDOFF_ALERT_MINUTES", 10, minimum=1)
# The site's address, for links in emails.
SITE_URL = env_url("SITE_URL", "http://127.0.0.1:8000")

# Outgoing email (bookings, handoff alerts): printed on the console unless EMAIL_HOST names
# an SMTP server.
EMAIL_HOST = env_str("EMAIL_HOST")
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
EMAIL_TIMEOUT = env_float("EMAIL_TIMEOUT", 10, minimum=1)  # seconds
DEFAULT_FROM_EMAIL = SERVER_EMAIL = env_str("DEFAULT_FROM_EMAIL", "chat@localhost")

# The LLM server: any OpenAI-compatible /v1/chat/completions (vLLM, OpenAI, llama.cpp, Ollama).
LLM_BASE_URL = env_url("LLM_BASE_URL", "http://127.0.0.1:8001/v1")
LLM_API_KEY = env_str("LLM_API_KEY")
LLM_MODEL = env_str("LLM_MODEL", "Qwen/Qwen2.5-7B-Instruct")
# Seconds from the visitor's message to the reply: every call, retry and wait comes out of it.
TURN_BUDGET = env_float("TURN_BUDGET", 2.5, minimum=0.1)
# Calls in flight at once per LLM server and app process (an endpoint may set its own). 64 lets
# four app processes fill vLLM's default batch of 256 sequences (--max-num-seqs) and no more;
# at 300 ms a call, 16 capped one process at ~13 turns/s, below its CPU ceiling (bench/).
LLM_MAX_IN_FLIGHT = env_int("LLM_MAX_IN_FLIGHT", 64, minimum=1)
# Retries of one classifier call after a connection error, 429 or 5xx (within TURN_BUDGET).
LLM_MAX_RETRIES = env_int("LLM_MAX_RETRIES", 3, minimum=0)
# shared_prefix: agency context and conversation first, shared by the calls (vLLM's prefix
# cache); system_first: each classifier's system prompt first, as in the tutorial.
LLM_PROMPT_LAYOUT = env_str("LLM_PROMPT_LAYOUT", "shared_prefix")
if LLM_PROMPT_LAYOUT not in ("shared_prefix", "system_first"):
    raise ImproperlyConfigured(
        f"LLM_PROMPT_LAYOUT must be shared_prefix or system_first, not {LLM_PROMPT_LAYOUT!r}"
    )
CLASSIFIER_MODELS = {
    "pricing": env_str("LLM_MODEL_PRICING", LLM_MODEL),
    "scheduling": env_str("LLM_MODEL_SCHEDULING", LLM_MODEL),
    "listing_question": env_str("LLM_MODEL_LISTING_QUESTION", LLM_MODEL),
}

# Privacy: `manage.py purge_conversations` anonymises conversations whose last message is older
# than this many days (agent/ops/retention.py says what it removes and keeps).
RETENTION_DAYS = env_int("RETENTION_DAYS", 365, minimum=1)
# The chat widget on other sites: the origins (scheme://host[:port]) whose pages may embed it,
# besides the app's own ALLOWED_HOSTS; checked on /chat/session and on the websocket upgrade.
CHAT_ALLOWED_ORIGINS = env_origins("CHAT_ALLOWED_ORIGINS")
# Seconds a conversation token works after it was issued (default 14 days, Django's session age).
CHAT_TOKEN_MAX_AGE = env_int("CHAT_TOKEN_MAX_AGE", 14 * 24 * 3600, minimum=60)
# Abuse limits of the visitor's chat socket (agent/chat/abuse.py). A turn costs one LLM call per
# enabled classifier (four by default), so the rate limits count LLM calls, over a sliding window.
# Per connection, 60/minute is 15 turns a minute with four classifiers: a fast typist sends about 6
# messages a minute, and the widget's queue of messages typed offline (sent at once on reconnect)
# fits too. Per client address (across processes when REDIS_URL is set), 600/minute is 150 turns a
# minute: about 25 people typing as fast as they can behind one NAT (an office, a school, a mobile
# carrier's shared address). One address can then cost at most 10 LLM calls a second. "off" turns
# a limit off (e.g. for a load test whose clients all come from one address).
CHAT_RATE_LIMIT_CONNECTION = env_rate_limits("CHAT_RATE_LIMIT_CONNECTION", "60/minute")
CHAT_RATE_LIMIT_IP = env_rate_limits("CHAT_RATE_LIMIT_IP", "600/minute")
# Open chat sockets per client address and app process (0: no cap): a visitor has one per tab,
# an office a few dozen at most. Across processes, nginx's limit_conn caps them (README).
CHAT_MAX_SOCKETS_PER_IP = env_int("CHAT_MAX_SOCKETS_PER_IP", 20, minimum=0)
# Largest websocket message and frame daphne reads, in bytes, for `manage.py runserver` (plain
# `daphne` takes --websocket-max-message-size and --websocket-max-frame-size); a larger one gets
# the connection closed (1009) before it is buffered. The largest valid chat frame is 2,000
# characters of text and a 64-character id: an encoder that escapes non-ASCII (Python's json.dumps)
# writes an emoji as a 12-byte surrogate pair, so about 24.8 KB (tests/chat/test_abuse.py checks it).
DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE = DAPHNE_WEBSOCKET_MAX_FRAME_SIZE = 32 * 1024
# Who may read /metrics besides logged-in staff: client addresses (the TCP peer daphne sees;
# X-Forwarded-For only counts when daphne runs with --proxy-headers). Empty by default: behind a
# reverse proxy on the same host every visitor's peer address is 127.0.0.1, so allowing loopback
# would make the metrics public. `make run` and the benchmark allow loopback.
METRICS_ALLOWED_IPS = env_networks("METRICS_ALLOWED_IPS", "")

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"

# Behind TLS in production: secure cookies, HSTS and redirects (``check --deploy`` asks for them).
HTTPS = env_bool("HTTPS", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = 31_536_000 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_PRELOAD = HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO").upper()},
    "loggers": {
        "httpx": {"level": "WARNING"},  # one INFO line per LLM call is too much
        # Its INFO line about a dropped message must reach agent.live.CountDrops at any level.
        "channels_redis": {"level": "INFO"},
    },
}

"""The app under daphne in a subprocess, for tests that need a real server process.

Imported by ``tests/browser/conftest.py``, the websocket-limit and the fault tests as
``servers`` (pytest puts ``tests/`` on ``sys.path`` for its conftest).
"""

import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from realestate.dev import scaled
from realestate.dev.devserver import free_port, wait_for_port
from tests import ROOT

__all__ = ["ROOT", "AppServer", "app_env", "free_port", "shared_database_url"]



def shared_database_url() -> str:
    """The ``DATABASE_URL`` of the test database pytest-django made (``test_<name>``), for an
    app subprocess to share it with the test."""
    from django.conf import settings

    url = urlsplit(settings.DATABASE_URL)
    return urlunsplit(url._replace(path="/" + settings.DATABASES["default"]["NAME"]))


class AppServer:
    """The app under ``manage.py runserver`` (daphne, static files served) in a subprocess.

    ``stop()`` and ``start()`` take it away and bring it back on the same port, as a crash and
    a restart would. Its output goes to ``log``.
    """

    def __init__(self, port: int, env: dict[str, str], log: Path):
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        """Start the server and wait until it accepts connections (up to 30 s)."""
        command = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{self.port}",
                   "--noreload", "--insecure", "--skip-checks"]
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            wait_for_port(self.port, self.process, seconds=30)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{self.log.read_text()[-3000:]}") from None

    def stop(self, kill: bool = False) -> None:
        """Stop the server: SIGKILL when ``kill`` (a crash), else SIGTERM. Safe to repeat."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def app_env(**overrides: str) -> dict[str, str]:
    """The environment of an ``AppServer`` against the test database (call it once the test
    database exists, e.g. from a fixture that uses ``django_db_setup``): this process's
    environment, ``ALLOWED_HOSTS`` 127.0.0.1, warnings only in the log, and ``overrides``."""
    return {
        **os.environ,
        "DATABASE_URL": shared_database_url(),
        "CONN_MAX_AGE": "0",  # no connection left open while a test flushes the tables
        "TURN_BUDGET": "2",
        "ALLOWED_HOSTS": "127.0.0.1",
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        **overrides,
    }


def require_nginx() -> None:
    """Skip the test without nginx, or fail it when REQUIRE_NGINX is set (CI)."""
    try:
        scaled.nginx_binary()
    except RuntimeError as exc:
        if os.environ.get("REQUIRE_NGINX", "") not in ("", "0"):
            pytest.fail(f"REQUIRE_NGINX is set but {exc}", pytrace=False)
        pytest.skip(str(exc))

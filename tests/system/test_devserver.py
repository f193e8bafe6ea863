"""``make run`` (realestate.dev.devserver) refuses a port in use before it starts anything, and
exits non-zero when daphne stops by itself."""

import os
import socket
import subprocess
import sys

import pytest

from realestate.dev import devserver
from tests import ROOT
from tests.servers import free_port


def run_devserver(**env: str) -> subprocess.CompletedProcess:
    """Run ``python -m realestate.dev.devserver`` with ``env`` on top of ours, without the
    test run's DATABASE_URL and LLM_BASE_URL (so reaching the start would start the embedded
    PostgreSQL and the stand-in)."""
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "LLM_BASE_URL")}
    return subprocess.run(
        [sys.executable, "-m", "realestate.dev.devserver"],
        cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=60,
    )


@pytest.fixture
def taken_port():
    """A port something listens on at 127.0.0.1."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_a_port_in_use_is_refused_naming_port(taken_port):
    result = run_devserver(PORT=str(taken_port), STANDIN_PORT=str(free_port()))
    assert result.returncode == 1
    assert f"port {taken_port} is in use; set PORT to another port" in result.stderr
    assert "make run PORT=" in result.stderr
    assert "PostgreSQL" not in result.stdout + result.stderr  # refused before it started


def test_the_stand_in_port_in_use_is_refused_naming_standin_port(taken_port):
    result = run_devserver(PORT=str(free_port()), STANDIN_PORT=str(taken_port))
    assert result.returncode == 1
    assert f"port {taken_port} is in use; set STANDIN_PORT to another port" in result.stderr
    assert "PostgreSQL" not in result.stdout + result.stderr


def test_a_bad_port_is_refused_naming_the_variable():
    result = run_devserver(PORT="eighty")
    assert result.returncode == 1
    assert "PORT must be a port number from 1 to 65535, not 'eighty'" in result.stderr


def test_daphne_stopping_by_itself_with_code_0_exits_non_zero(monkeypatch, capsys):
    # What daphne does on "Listen failure": a message, then exit code 0.
    monkeypatch.setenv("PORT", str(free_port()))
    monkeypatch.setenv("LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("SITE_URL", "http://127.0.0.1:8000")  # main sets a default otherwise
    monkeypatch.setattr(devserver.signal, "signal", lambda *args: None)  # pytest's SIGTERM
    monkeypatch.setattr(devserver, "prepare", lambda children, standin_port=None: None)
    monkeypatch.setattr(devserver, "manage", lambda *args: [
        sys.executable, "-c", "print('Listen failure: Address already in use.')",
    ])
    assert devserver.main() == 1
    assert "daphne stopped on its own (exit code 0)" in capsys.readouterr().err

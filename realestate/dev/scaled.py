"""``make run-scaled``: the app as N daphne workers behind nginx, sharing Redis.

``python -m realestate.dev.scaled [--workers N] [--port P]`` does what ``make run`` does (embedded
PostgreSQL unless DATABASE_URL is set, migrations, demo data, the LLM stand-in unless
LLM_BASE_URL is set), then:

- Redis: REDIS_URL when set; else the machine's Redis on 127.0.0.1:6379 when it answers; else
  a ``redis-server`` of our own on 127.0.0.1:6380 (``realestate.dev.localredis``), stopped at exit;
- ``collectstatic`` into STATIC_ROOT, which nginx serves;
- N workers, ``daphne`` (``TRUSTED_PROXIES=1``) on 127.0.0.1:8101, 8102, ... (each worker's own
  ``/metrics`` is there, for Prometheus to scrape one by one);
- nginx from Debian's package on 127.0.0.1:P (default 8000), configured by
  ``deploy/nginx.conf`` rendered into ``.scaled/``.

Ctrl-C stops everything it started. ``Cluster`` is also what the tests and ``bench/load.py``
use to run workers and nginx.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from realestate.dev import devdb, devserver, localredis

ROOT = Path(__file__).resolve().parents[2]
NGINX_TEMPLATE = ROOT / "deploy" / "nginx.conf"
FIRST_WORKER_PORT = 8101
OWN_REDIS_PORT = 6380
# Open chat sockets per client address across all workers (nginx limit_conn). An office behind
# one NAT address may have a few dozen visitors with the site open.
SOCKETS_PER_IP = 40


def nginx_binary() -> str:
    """Path of nginx (Debian's ``nginx`` package puts it in /usr/sbin).

    Raises:
        RuntimeError: nginx is not installed; the message says how to install it.
    """
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise RuntimeError("nginx is not installed: apt-get install nginx")
    return found


def worker_command(port: int) -> list[str]:
    """The command line of one app worker: daphne on 127.0.0.1:``port``.

    The client address is the one nginx puts in X-Forwarded-For (``TRUSTED_PROXIES=1``, set by
    ``main``; ``realestate.proxy``), so the rate limits and the socket cap count per visitor,
    not per nginx; not daphne's ``--proxy-headers``, which trusts the header's first address.
    Plain daphne does not read the settings' frame limits, so they are passed here.
    """
    from django.conf import settings

    return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
            "--websocket-max-message-size", str(settings.DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE),
            "--websocket-max-frame-size", str(settings.DAPHNE_WEBSOCKET_MAX_FRAME_SIZE),
            "realestate.asgi:application"]


def render_nginx_conf(folder: Path, port: int, worker_ports: list[int],
                      sockets_per_ip: int = SOCKETS_PER_IP) -> Path:
    """Write ``deploy/nginx.conf`` with its placeholders filled into ``folder/nginx.conf``.

    Args:
        folder: nginx's prefix: its pid file, logs and temporary files go here.
        port: the public port, on 127.0.0.1.
        worker_ports: the workers' ports on 127.0.0.1.
        sockets_per_ip: open websockets allowed per client address (``limit_conn``).
    Returns:
        The path of the rendered file.
    """
    from django.conf import settings

    folder.mkdir(parents=True, exist_ok=True)
    upstreams = "\n".join(
        f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s max_conns=5000;"
        for p in worker_ports
    )
    text = NGINX_TEMPLATE.read_text()
    for name, value in {
        "PREFIX": str(folder),
        "LISTEN": f"127.0.0.1:{port}",
        "UPSTREAMS": upstreams,
        "STATIC_ROOT": str(settings.STATIC_ROOT),
        "SOCKETS_PER_IP": str(sockets_per_ip),
    }.items():
        text = text.replace(f"@@{name}@@", value)
    conf = folder / "nginx.conf"
    conf.write_text(text)
    return conf


class Cluster:
    """N app workers (daphne) behind one nginx port, as subprocesses.

    Args:
        port: nginx's port on 127.0.0.1.
        worker_ports: one port per worker on 127.0.0.1.
        env: the workers' environment (DATABASE_URL, REDIS_URL, LLM_BASE_URL, ...).
        folder: nginx's prefix and the logs, ``worker-<port>.log`` and ``error.log``.
        sockets_per_ip: nginx's cap on open websockets per client address.
        worker_env: per worker, variables to add to ``env`` (one dict each, or None), e.g.
            a worker of its own LLM server or turn cap in a test.

    ``kill_worker(i)`` and ``start_worker(i)`` take a worker away (SIGKILL, as a crash) and
    bring it back on the same port.
    """

    def __init__(self, port: int, worker_ports: list[int], env: dict[str, str], folder: Path,
                 sockets_per_ip: int = SOCKETS_PER_IP,
                 worker_env: list[dict[str, str]] | None = None):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.worker_ports = list(worker_ports)
        self.env = env
        self.folder = Path(folder)
        self.sockets_per_ip = sockets_per_ip
        self.worker_env = worker_env or [{} for _ in self.worker_ports]
        self.workers: list[subprocess.Popen | None] = [None] * len(self.worker_ports)
        self.nginx: subprocess.Popen | None = None

    def start(self) -> None:
        """Start every worker, then nginx, and wait until all accept connections.

        Raises:
            RuntimeError: a process exited or its port stayed closed (its log's tail is in
                the message); nginx is not installed.
        """
        for index in range(len(self.worker_ports)):
            self.start_worker(index)
        conf = render_nginx_conf(self.folder, self.port, self.worker_ports, self.sockets_per_ip)
        self.nginx = subprocess.Popen(
            [nginx_binary(), "-p", str(self.folder), "-c", str(conf),
             "-e", str(self.folder / "error.log"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        self._wait(self.port, self.nginx, self.folder / "error.log")

    def start_worker(self, index: int) -> None:
        """Start worker ``index`` and wait (up to 30 s) until it accepts connections."""
        port = self.worker_ports[index]
        log = self.folder / f"worker-{port}.log"
        self.folder.mkdir(parents=True, exist_ok=True)
        with log.open("a") as out:
            self.workers[index] = subprocess.Popen(
                worker_command(port), cwd=ROOT, env={**self.env, **self.worker_env[index]},
                stdout=out, stderr=subprocess.STDOUT,
            )
        self._wait(port, self.workers[index], log)

    def kill_worker(self, index: int) -> None:
        """SIGKILL worker ``index``, as a crash would, and reap it."""
        process = self.workers[index]
        if process is not None:
            process.kill()
            process.wait()
            self.workers[index] = None

    def stop(self) -> None:
        """Stop nginx and every worker (SIGTERM, then SIGKILL after 10 s); safe to repeat."""
        processes = [p for p in [self.nginx, *self.workers] if p is not None]
        devserver.stop(processes)
        self.nginx = None
        self.workers = [None] * len(self.worker_ports)

    @staticmethod
    def _wait(port: int, process: subprocess.Popen, log: Path) -> None:
        try:
            devserver.wait_for_port(port, process, seconds=30)
        except RuntimeError as exc:
            tail = log.read_text()[-3000:] if log.exists() else ""
            raise RuntimeError(f"{exc}\n{tail}") from None


def local_redis(folder: Path) -> tuple[str, localredis.RedisProcess | None]:
    """The Redis to use: ``(url, process)``; ``process`` is the server started here, or None
    when REDIS_URL or the machine's Redis on 127.0.0.1:6379 is used."""
    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"], None
    if localredis.answers():
        return localredis.MACHINE_REDIS_URL, None
    own = localredis.RedisProcess(OWN_REDIS_PORT, folder / "redis")
    own.start()
    return own.url, own


def main(argv: list[str]) -> int:
    """Run the scaled app until Ctrl-C; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m realestate.dev.scaled", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="app worker processes (2)")
    parser.add_argument("--port", type=int, default=devserver.APP_PORT, help="nginx's port")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    nginx_binary()  # fail before starting anything
    signal.signal(signal.SIGTERM, devdb.stop_on_sigterm)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realestate.settings")
    os.environ.setdefault("TRUSTED_PROXIES", "1")  # nginx, in front of every worker
    folder = ROOT / ".scaled"
    children: list[subprocess.Popen] = []
    redis = cluster = None
    try:
        devserver.prepare(children)
        os.environ["REDIS_URL"], redis = local_redis(folder)
        print(f"Redis: {os.environ['REDIS_URL']}", flush=True)
        subprocess.run(devserver.manage("collectstatic", "--noinput", "-v", "0"), check=True)
        import django

        django.setup()
        ports = [FIRST_WORKER_PORT + i for i in range(args.workers)]
        cluster = Cluster(args.port, ports, dict(os.environ), folder)
        cluster.start()
        print(f"chat: {cluster.url}/  ({args.workers} workers on ports "
              f"{ports[0]}-{ports[-1]}, logs in .scaled/; Ctrl-C stops everything)", flush=True)
        return cluster.nginx.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if cluster is not None:
            cluster.stop()
        if redis is not None:
            redis.stop()
        devserver.stop(children)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

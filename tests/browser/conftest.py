"""Browser tests: Debian's Chromium, driven by Playwright, against the app served by daphne.

Playwright never downloads a browser here: it launches ``CHROMIUM_PATH`` (default
``/usr/bin/chromium``, from ``apt-get install chromium``). Without it, or without the
``playwright`` package, these tests are skipped and the run ends with a warning naming the
install command; with ``REQUIRE_BROWSER=1`` (CI) they fail instead.

The app runs as ``manage.py runserver`` (daphne) in a subprocess on a loopback port, against
the test database, with the LLM stand-in of ``agent.llm.standin.server`` in this process. The
agency's own site, on another origin, is a small static server here too.
"""

import functools
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests import ROOT
from tests.servers import AppServer, app_env, free_port

ARTIFACTS = ROOT / "test-artifacts"
INSTALL = "apt-get install chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
_skipped: list[str] = []  # why browser tests were skipped, for the closing warning


def chromium_path() -> str:
    """The Chromium executable to launch: ``CHROMIUM_PATH``, default ``/usr/bin/chromium``."""
    return os.environ.get("CHROMIUM_PATH") or "/usr/bin/chromium"


@functools.cache
def browser_problem() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (make install)"
    path = chromium_path()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return f"Chromium not found at {path}"
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Skip (or, with REQUIRE_BROWSER=1, fail) each browser test before its fixtures run."""
    problem = browser_problem()
    if problem is None:
        return
    if os.environ.get("REQUIRE_BROWSER", "") not in ("", "0"):
        pytest.fail(f"REQUIRE_BROWSER is set but {problem}; install it: {INSTALL}", pytrace=False)
    _skipped.append(item.nodeid)
    pytest.skip(f"{problem}; install it: {INSTALL}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter):
    """End the report (after the short summary, before the counts) with the install hint."""
    result = yield
    if _skipped:
        terminalreporter.write_line(
            f"WARNING: {len(_skipped)} browser tests skipped: {browser_problem()}. "
            f"Install Chromium with `{INSTALL}` (Debian), or set CHROMIUM_PATH.",
            yellow=True,
            bold=True,
        )
    return result


class SiteServer:
    """A plain static web server on loopback: the agency's own site, on another origin.

    ``origin`` uses the name ``localhost``, so it differs from the app's ``127.0.0.1`` origin.
    It serves ``html`` at ``/`` and 404 elsewhere.
    """

    def __init__(self, html: str):
        body = html.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                found = self.path.split("?")[0] == "/"
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body) if found else 0))
                self.end_headers()
                if found:
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://localhost:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "SiteServer":
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class TcpProxy:
    """A loopback TCP proxy to ``target_port``: the network between browser and app.

    ``cut()`` drops every connection and stops listening, as a network outage would, while
    the app goes on running; ``restore()`` listens again on the same ``port``.
    """

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.listener: socket.socket | None = None
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()

    def restore(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def cut(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the other thread
        self.listener.close()
        with self.lock:
            for sock in self.sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self.sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def embedding_page(app_url: str) -> str:
    """The agency's page: its own content and the widget's one script tag."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Harbor &amp; Oak, the agency's own site</title>
<script src="{app_url}/static/chat/widget.js" data-title="Talk to us"
        data-colour="#6b4f2a" data-position="left" defer></script>
</head><body><h1>Homes by the harbour</h1><p><a href="/">Home</a></p></body></html>"""


@pytest.fixture(scope="module")
def app_port() -> int:
    """The app's port, picked first: the sites' pages need the app's URL."""
    return free_port()


@pytest.fixture(scope="module")
def sites(app_port):
    """Two sites on other origins whose pages embed the widget: ``allowed`` is in
    CHAT_ALLOWED_ORIGINS, ``other`` is not."""
    page = embedding_page(f"http://127.0.0.1:{app_port}")
    with SiteServer(page) as allowed, SiteServer(page) as other:
        yield {"allowed": allowed, "other": other}


@pytest.fixture(scope="module")
def app(django_db_setup, app_port, llm, sites, tmp_path_factory):
    """The app, served by daphne on 127.0.0.1 against the test database; ``ALLOWED_HOSTS``
    is 127.0.0.1 only and ``CHAT_ALLOWED_ORIGINS`` the ``allowed`` site's origin."""
    env = app_env(
        LLM_BASE_URL=llm.base_url, CHAT_ALLOWED_ORIGINS=sites["allowed"].origin
    )
    server = AppServer(app_port, env, tmp_path_factory.mktemp("app") / "daphne.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    """Chromium, launched by Playwright from CHROMIUM_PATH with the flags this machine needs.

    While it runs, the test thread has Playwright's event loop set as "running", so Django's
    ORM would refuse synchronous calls; DJANGO_ALLOW_ASYNC_UNSAFE lets these tests (and only
    them: it is unset afterwards) read the database, which no coroutine touches meanwhile.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
        try:
            yield chromium
        finally:
            del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
            chromium.close()


@pytest.fixture
def context(browser, app, classifier_rows):
    """A fresh browser profile (no cookies, no storage) at desktop size; the app is running
    and the classifier rows exist (an earlier transactional test may have emptied them)."""
    if not app.running:
        app.start()
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    yield context
    context.close()


@pytest.fixture
def network(app):
    """A proxy in front of the app whose ``cut()`` and ``restore()`` drop and bring back the
    visitor's connection; open ``network.url`` instead of ``app.url``."""
    proxy = TcpProxy(app.port)
    proxy.restore()
    yield proxy
    proxy.cut()


@pytest.fixture
def page(context):
    """A tab in ``context``."""
    return context.new_page()

"""Shared fixtures. Tests never leave the machine: any connection beyond loopback fails."""

import ipaddress
import socket

import pytest

from tests import ROOT
from tests.rows import seed_classifier_rows

SLOW_TIER = ("system", "browser")  # folders of tests/ whose tests start processes or a browser


def pytest_collection_modifyitems(config, items):
    """Mark every test of the slow tier ``system``, by its folder."""
    for item in items:
        parts = item.path.relative_to(ROOT / "tests").parts
        if parts[0] in SLOW_TIER:
            item.add_marker(pytest.mark.system)


def _is_local(address) -> bool:
    if isinstance(address, (str, bytes)):  # a Unix socket path
        return True
    host = address[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(scope="session", autouse=True)
def no_stray_sessions_at_the_end(django_db_setup, django_db_blocker):
    """Before the test database is dropped, end the sessions a test left on it: a turn
    task cancelled with its test's event loop can still be in a database trip on another
    thread, and ``DROP DATABASE`` then failed ("being accessed by other users") after the
    last test of an xdist worker had passed."""
    yield
    from django.db import connection

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    connection.close()


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fail any socket connection to an address other than loopback or a Unix socket."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guard(address):
        if not _is_local(address):
            raise ConnectionRefusedError(f"tests may not leave the machine: {address!r}")

    def connect(self, address):
        guard(address)
        return real_connect(self, address)

    def connect_ex(self, address):
        guard(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


@pytest.fixture(autouse=True)
def fast_password_hashing(request, settings):
    """MD5 password hashes in the quick tier, as Django's testing docs advise ("Speeding up the
    tests"): PBKDF2's default iterations cost about 0.3 s per user made or logged in. The slow
    tier keeps the real hasher, since its app processes must verify the hashes it makes."""
    if request.node.get_closest_marker("system") is None:
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def one_database_thread(request, settings):
    """In the test process the chat's database trips run on channels' one database thread
    (``DB_TRIP_THREADS`` 0), where pytest-django's per-test transaction and connection guard
    apply; threads of ``agent.dbgate``'s own pool would keep connections past a test. The
    app processes of the slow tier use the pool (the default), and tests marked
    ``trip_threads`` (tests/agent/test_db_trip_threads.py) ask for it here."""
    if request.node.get_closest_marker("trip_threads") is None:
        settings.DB_TRIP_THREADS = 0


@pytest.fixture(autouse=True)
def close_old_connections_unpatched():
    """Undo what channels' test communicators can leave behind: each patches
    ``channels.db.close_old_connections`` with a no-op around every ``send_input`` and
    ``receive_output`` (channels 4.3 ``testing/application.py``), and when two communicators'
    patches interleave, the later exit restores the other's no-op, for the rest of the process
    (django/channels#2118). Trips after that never gave their connections back, and
    tests/agent/test_db_trip_threads.py failed when it ran after such a test."""
    yield
    import channels.db
    import django.db

    channels.db.close_old_connections = django.db.close_old_connections


@pytest.fixture
def listings(db):
    """The tutorial's three listings: 123456 at $350,000, 654321 at $450,000, 112233 at $550,000."""
    from listings.models import Listing

    return {
        listing_id: Listing.objects.create(
            listing_id=listing_id, address=f"{n} Harbor Street", price=price, bedrooms=3
        )
        for n, (listing_id, price) in enumerate(
            [("123456", 350_000), ("654321", 450_000), ("112233", 550_000)], start=1
        )
    }


@pytest.fixture
def realtors(db):
    """Anna and Ben, two staff users who take calls."""
    from django.contrib.auth.models import User

    from listings.models import Realtor

    return [
        Realtor.objects.create(
            user=User.objects.create_user(username, first_name=first, last_name=last, is_staff=True)
        )
        for username, first, last in [("anna", "Anna", "Novak"), ("ben", "Ben", "Carter")]
    ]


@pytest.fixture
def conversation(db):
    """An empty conversation of a visitor's session."""
    from agent.models import Conversation

    return Conversation.objects.create()


@pytest.fixture
def classifier_rows(db):
    """The default endpoint and the built-in classifiers as rows (``seed_classifier_rows``)."""
    return seed_classifier_rows()


@pytest.fixture(scope="module")
def llm():
    """The rule-based LLM stand-in on a loopback port, one per test module, for the app run
    as a subprocess (daphne, nginx workers); a test may set its ``latency_ms``."""
    from agent.llm.standin.server import StandinServer

    with StandinServer() as server:
        yield server


@pytest.fixture
def standin(settings, classifier_rows):
    """The rule-based LLM stand-in on a free loopback port; LLM_BASE_URL points at it, and the
    default classifier rows exist."""
    from agent.llm.standin.server import StandinServer

    with StandinServer() as server:
        settings.LLM_BASE_URL = server.base_url
        settings.TURN_BUDGET = 2.0
        yield server


@pytest.fixture
async def chat_client():
    """After the test, closes the LLM clients and the rate limiter its event loop opened, and
    the database connection of the thread where async code runs the ORM (else the test
    database stays busy)."""
    from asgiref.sync import sync_to_async
    from django.db import connections

    from agent.chat.abuse import close_limiters
    from agent.llm.client import close_clients

    yield
    await close_clients()
    await close_limiters()
    await sync_to_async(connections.close_all)()


@pytest.fixture
def visitor_session(db):
    """A saved Django session, as the chat page creates for a visitor."""
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session["chat"] = True
    session.save()
    return session


@pytest.fixture
def connect(visitor_session, chat_client):
    """Open the chat websocket as the visitor (from address ``client``, default none); returns
    (communicator, history frame), with None for the frame when the socket was refused, and the
    first frame when the socket was accepted and closed. The test disconnects what it opened."""
    from channels.testing import WebsocketCommunicator
    from django.conf import settings

    from realestate.asgi import application

    async def open_chat(
        origin=b"http://localhost",
        session_key=visitor_session.session_key,
        path="/ws/chat/",
        client=None,
    ):
        headers = [(b"origin", origin)]
        if session_key:
            headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={session_key}".encode()))
        communicator = WebsocketCommunicator(application, path, headers=headers)
        if client is not None:  # the client's address, as daphne puts it in the scope
            communicator.scope["client"] = [client, 50000]
        connected, _ = await communicator.connect()
        if not connected:
            return communicator, None
        return communicator, await communicator.receive_json_from()

    return open_chat


@pytest.fixture
def redis_process(tmp_path):
    """A Redis server of the test's own on a free loopback port (``realestate.dev.localredis``),
    so stopping or flooding it never touches the machine's; stopped after the test."""
    from realestate.dev.devserver import free_port
    from realestate.dev.localredis import RedisProcess

    server = RedisProcess(free_port(), tmp_path / "redis")
    server.start()
    yield server
    server.stop()

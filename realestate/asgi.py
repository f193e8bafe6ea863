"""ASGI entry point: Django for HTTP, the chat and staff consumers for websockets."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realestate.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from agent.chat import shedding  # noqa: E402
from agent.chat.consumer import ChatConsumer  # noqa: E402
from agent.chat.widget import ChatOriginValidator  # noqa: E402
from agent.staff.consumer import StaffConsumer  # noqa: E402
from realestate.proxy import TrustedProxies  # noqa: E402

# A saturated worker's refusal of a new chat is an HTTP 503, which nginx retries elsewhere.
shedding.install_daphne_denial()

websocket_urlpatterns = [
    path("ws/chat/", ChatConsumer.as_asgi()),
    path("ws/staff/", StaffConsumer.as_asgi()),
]

# The client's address from TRUSTED_PROXIES' X-Forwarded-For first, for both protocols.
application = TrustedProxies(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            # The Origin's host must be in ALLOWED_HOSTS, or the origin in CHAT_ALLOWED_ORIGINS.
            "websocket": ChatOriginValidator(
                AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
            ),
        }
    )
)

# Python's cycle collector, tuned for a worker: with its default threshold (a young collection
# every 700 allocations) it took 8% of a worker's CPU at 50 chats (1.7 to 2.3 s of 20 to 27 s,
# bench/README.md, "Issue 16, fifth round"). What is loaded by now (Django, the app, the URL
# patterns) lives as long as the process, so it is frozen out of every later scan; young
# objects are collected every 50,000 allocations. The worker's peak memory did not move.
GC_YOUNG_THRESHOLD = 50_000
gc.freeze()
gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])

"""ASGI entry point: Django for HTTP, the chat and staff consumers for websockets."""

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

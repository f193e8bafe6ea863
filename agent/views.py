"""The chat page, and the Prometheus metrics for staff and allow-listed scrapers."""

import ipaddress

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agent.metrics import REGISTRY
from listings.models import Listing

FEATURED_LISTINGS = 3


@ensure_csrf_cookie
def chat_page(request):
    """Render the agency's page with the chat, making sure the visitor has a session.

    The websocket at ``/ws/chat/`` finds the visitor's conversation by this session. The page
    shows the first ``FEATURED_LISTINGS`` active listings by listing ID.
    """
    if request.session.session_key is None:
        request.session["chat"] = True  # marks the session as modified so it is saved
        request.session.save()
    featured = Listing.objects.filter(status=Listing.Status.ACTIVE)[:FEATURED_LISTINGS]
    return render(request, "chat.html", {"listings": featured})


def address_allowed(address: str | None) -> bool:
    """Whether a client address (``REMOTE_ADDR``) is in ``settings.METRICS_ALLOWED_IPS``.

    An IPv4 address mapped into IPv6 (``::ffff:127.0.0.1``) counts as the IPv4 address; a
    missing or unparsable address is never allowed.
    """
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in settings.METRICS_ALLOWED_IPS)


@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """The metrics of ``agent.metrics`` in Prometheus' text format.

    Only for an active staff user or a client address in ``METRICS_ALLOWED_IPS``; anyone else
    gets 404, so the page's existence is not disclosed.
    """
    if not address_allowed(request.META.get("REMOTE_ADDR")):
        user = request.user  # read only now: a scraper's request costs no session query
        if not (user.is_active and user.is_staff):
            raise Http404
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)

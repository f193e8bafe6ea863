"""The chat page, the endpoint that starts the widget's conversation, the widget's labels in
the page's language, and the Prometheus metrics for staff and allow-listed scrapers."""

import ipaddress
import json

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import translation
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt, ensure_csrf_cookie
from django.views.decorators.http import require_http_methods, require_safe
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agent.chat import language, turn
from agent.chat.widget import issue_token, origin_allowed, read_token
from agent.metrics import REGISTRY
from agent.models import Conversation
from listings.models import Listing

FEATURED_LISTINGS = 3
PREFLIGHT_MAX_AGE = 600  # seconds a browser may cache the answer to a CORS preflight
LABELS_MAX_AGE = 3600  # seconds a browser may cache the widget's labels
WIDGET_LABELS = (  # every text of static/chat/widget.js ({n}: a number it fills in)
    gettext_noop("Chat with us"),
    gettext_noop("Connecting…"),
    gettext_noop("Minimise chat"),
    gettext_noop("Conversation"),
    gettext_noop("Typing…"),
    gettext_noop("Ask about a listing…"),
    gettext_noop("Send"),
    gettext_noop("Your message"),
    gettext_noop("Enter to send, Shift+Enter for a new line."),
    gettext_noop("You"),
    gettext_noop("Assistant"),
    gettext_noop("Staff"),
    gettext_noop(" (staff)"),
    gettext_noop(" bed · "),
    gettext_noop(" bath · "),
    gettext_noop("You · sending"),
    gettext_noop("You · not sent yet"),
    gettext_noop("You are sending messages faster than we can answer. Not sent yet: we "
                 "will send it again in {n} s."),
    gettext_noop("Online"),
    gettext_noop("Something went wrong."),
    gettext_noop("Offline, reconnecting in {n} s…"),
    gettext_noop(" Your messages will be sent then."),
    gettext_noop("The chat is not available on this site."),
    gettext_noop("Too many chats are open from your network. Trying again in {n} s…"),
)


@ensure_csrf_cookie
def chat_page(request):
    """Render the agency's page with the chat widget, making sure the visitor's session names
    a conversation (``agent.chat.turn.open_conversation``).

    The page shows the first ``FEATURED_LISTINGS`` active listings by listing ID.
    """
    turn.open_conversation(request.session, language=language.of_request(request))
    featured = Listing.objects.filter(status=Listing.Status.ACTIVE)[:FEATURED_LISTINGS]
    return render(request, "chat.html", {"listings": featured})


@csrf_exempt  # no cookie is trusted for a cross-origin caller; the Origin check comes first
@never_cache
@require_http_methods(["POST", "OPTIONS"])
def chat_session(request):
    """Start or resume the widget's conversation: ``POST /chat/session``.

    Request: a JSON object ``{"token": "<token the widget holds>" | null, "lang": "<the page's
    language tag>" | null}`` (a new conversation's language: ``lang``, else the browser's
    ``Accept-Language``) from a page whose
    ``Origin`` passes ``agent.chat.widget.origin_allowed``. ``OPTIONS`` answers the CORS preflight.

    Returns:
        200 ``{"token": "...", "conversation": "<uuid>"}``: the same token and conversation
        when the token is valid; otherwise the conversation of the session cookie (same-origin
        pages only) or a new one, with a new token.
        400 ``{"error": "bad_request", ...}`` when the body is not such an object.
        403 ``{"error": "origin_not_allowed", ...}`` when the Origin is missing or not allowed;
        nothing is created, and the widget, which may read this answer, stops trying.
    Every answer to a browser names its ``Origin`` in ``Access-Control-Allow-Origin`` (never
    ``*``), with no credentials header: the token, not a cookie, carries the conversation
    across sites.
    """
    origin = request.headers.get("Origin")
    if not origin_allowed(origin):
        response = JsonResponse(
            {"error": "origin_not_allowed", "message": "This site may not use the chat."},
            status=403,
        )
    elif request.method == "OPTIONS":
        response = HttpResponse(status=204)
        response["Access-Control-Allow-Methods"] = "POST"
        response["Access-Control-Allow-Headers"] = "Content-Type"
        response["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE)
    else:
        response = _start(request)
    if origin:  # even on a 403, so the widget can read the refusal and stop retrying
        response["Access-Control-Allow-Origin"] = origin
    patch_vary_headers(response, ["Origin"])
    return response


@require_safe
def chat_labels(request):
    """The widget's labels in the page's language: ``GET /chat/labels?lang=es``.

    The language is ``lang`` (a tag such as "es-MX"), else the browser's ``Accept-Language``
    (``agent.chat.language.of_request``). Public text, so any origin may read it.

    Returns:
        200 ``{"<English label>": "<label in the language>", ...}`` for ``WIDGET_LABELS``;
        ``{}`` for English.
    """
    code = language.of_request(request, request.GET.get("lang"))
    with translation.override(code):
        labels = {text: _(text) for text in WIDGET_LABELS if _(text) != text}
    response = JsonResponse(labels)
    response["Access-Control-Allow-Origin"] = "*"
    response["Content-Language"] = code
    patch_cache_control(response, public=True, max_age=LABELS_MAX_AGE)
    patch_vary_headers(response, ["Accept-Language"])
    return response


def _start(request) -> JsonResponse:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        body = None
    if not isinstance(body, dict) or not all(
            isinstance(body.get(name, ""), (str, type(None))) for name in ("token", "lang")):
        return JsonResponse(
            {"error": "bad_request",
             "message": 'Send a JSON object {"token": string or null, "lang": string or null}.'},
            status=400,
        )
    token = body.get("token")
    conversation_id = read_token(token)
    if conversation_id and Conversation.objects.filter(id=conversation_id).exists():
        return JsonResponse({"token": token, "conversation": conversation_id})
    conversation = turn.open_conversation(
        request.session, language=language.of_request(request, body.get("lang"))
    )
    return JsonResponse(
        {"token": issue_token(conversation.id), "conversation": str(conversation.id)}
    )


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

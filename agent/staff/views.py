"""The staff screens inside the admin: the live handoff queue and one handoff's live transcript.

Both are wrapped in ``admin.site.admin_view`` (``realestate/urls.py``), so they need the
admin's login (an active ``is_staff`` user) and look like the admin; the queue needs
``agent.view_handoff`` too, a handoff's page that and ``agent.view_conversation``
(``agent.staff.access``), else 403. The page is rendered
complete on the server; ``static/staff/live.js`` then keeps it current over ``/ws/staff/``
(``agent.staff.consumer``) and sends the claim, release, resolve and reply actions.
"""

from datetime import datetime

from django.contrib import admin
from django.contrib.auth.decorators import permission_required
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.utils import timezone

from agent.models import Handoff, Message
from agent.staff import access, handoffs


def waited(since: datetime, now: datetime) -> str:
    """How long someone has waited, as staff read it: ``under a minute``, ``7 min``,
    ``2 h 5 min``. ``static/staff/live.js`` writes the same words as time passes."""
    minutes = max(0, int((now - since).total_seconds() // 60))
    if minutes < 1:
        return "under a minute"
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


@permission_required(access.VIEW_QUEUE, raise_exception=True)
def handoff_queue(request):
    """The open handoffs, oldest first, with how long each visitor has waited."""
    queue = handoffs.queue_frame()
    now = timezone.now()
    for item in queue["handoffs"]:
        item["waited"] = waited(datetime.fromisoformat(item["queued_at"]), now)
    context = {
        **admin.site.each_context(request),
        "title": "Handoff queue",
        "queue": queue,
    }
    return TemplateResponse(request, "admin/handoffs/queue.html", context)


@permission_required([access.VIEW_QUEUE, access.VIEW_TRANSCRIPTS], raise_exception=True)
def handoff_detail(request, pk: int):
    """One handoff: its conversation's transcript, live, with claim / release / resolve and a
    reply box. 404 for an unknown handoff."""
    handoff = get_object_or_404(
        Handoff.objects.select_related("conversation", "claimed_by", "message"), pk=pk
    )
    transcript = Message.objects.after(handoff.conversation_id)
    context = {
        **admin.site.each_context(request),
        "title": f"Handoff {handoff.pk}",
        "handoff": handoff,
        "claimed_by": handoffs.staff_name(handoff.claimed_by) if handoff.claimed_by else "",
        "waited": waited(handoff.created_at, handoff.claimed_at or timezone.now()),
        "transcript": transcript,  # not "messages": the admin shows those as notifications
        "last_seq": transcript[-1].seq if transcript else 0,
    }
    return TemplateResponse(request, "admin/handoffs/detail.html", context)

"""The chat page."""

from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

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

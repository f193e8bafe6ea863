"""The chat page."""

from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie


@ensure_csrf_cookie
def chat_page(request):
    """Render the agency's page with the chat, making sure the visitor has a session.

    The websocket at ``/ws/chat/`` finds the visitor's conversation by this session.
    """
    if request.session.session_key is None:
        request.session["chat"] = True  # marks the session as modified so it is saved
        request.session.save()
    return render(request, "chat.html")

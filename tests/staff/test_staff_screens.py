"""The staff screens in the admin: the badge on every admin page, the queue and the handoff
page, their login, and text from visitors shown as text."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from agent.models import Handoff, Message
from agent.staff import handoffs
from agent.staff.views import waited

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert(1)</script>"


@pytest.fixture
def handoff(conversation):
    question = Message.objects.store(conversation.id, "user", f"Is the basement dry? {SCRIPT}")
    Message.objects.store(conversation.id, "assistant", "Let me transfer you.", route="fallback")
    handoff = Handoff.objects.create(
        conversation=conversation, message=question, reason=f"no classifier matched {SCRIPT}"
    )
    Handoff.objects.filter(pk=handoff.pk).update(created_at=timezone.now() - timedelta(minutes=7))
    return handoff


@pytest.fixture
def anna():
    return get_user_model().objects.create_user(
        "anna", first_name="Anna", is_staff=True, is_superuser=True
    )


def test_every_admin_page_has_the_waiting_badge_and_its_script(admin_client):
    for url in (reverse("admin:index"), reverse("admin:agent_conversation_changelist")):
        page = admin_client.get(url).content.decode()
        assert 'id="handoff-count"' in page
        assert 'id="handoff-sound"' in page
        assert "staff/live.js" in page
        assert f'href="{reverse("handoff_queue")}"' in page


def test_the_login_page_has_no_badge(client):
    page = client.get(reverse("admin:login")).content.decode()
    assert "handoff-count" not in page and "live.js" not in page


def test_the_queue_lists_open_handoffs_with_the_wait_escaped(admin_client, handoff):
    Handoff.objects.create(conversation=handoff.conversation, reason="done", status="resolved")
    response = admin_client.get(reverse("handoff_queue"))
    page = response.content.decode()
    assert response.status_code == 200
    assert "7 min" in page
    assert f'href="{reverse("handoff_detail", args=[handoff.pk])}"' in page
    assert SCRIPT not in page
    assert "Is the basement dry? &lt;script&gt;" in page
    assert "done" not in page
    assert '<strong id="queue-waiting">1</strong>' in page


def test_the_handoff_page_shows_the_transcript_as_text_and_who_holds_it(
    client, anna, handoff
):
    handoffs.claim(handoff.pk, anna)
    handoffs.post_staff_message(handoff.pk, anna, "Hi, Anna <b>here</b>")
    client.force_login(anna)
    response = client.get(reverse("handoff_detail", args=[handoff.pk]))
    page = response.content.decode()
    assert response.status_code == 200
    assert SCRIPT not in page and "<b>here</b>" not in page
    assert "messagelist" not in page  # the transcript is not shown as admin notifications
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Anna:</strong>" in page and "Hi, Anna &lt;b&gt;here&lt;/b&gt;" in page
    assert f'data-conversation="{handoff.conversation_id}"' in page
    assert 'data-last-seq="3"' in page
    assert f'data-claimed-by-id="{anna.pk}"' in page
    assert "claimed by Anna" in page


def test_an_unknown_handoff_is_a_404(admin_client):
    assert admin_client.get(reverse("handoff_detail", args=[424242])).status_code == 404


@pytest.mark.parametrize("url_name", ["handoff_queue", "handoff_detail"])
def test_the_staff_screens_send_non_staff_to_the_login(client, handoff, url_name):
    args = [handoff.pk] if url_name == "handoff_detail" else []
    url = reverse(url_name, args=args)
    assert client.get(url).url.startswith(reverse("admin:login"))
    client.force_login(get_user_model().objects.create_user("vic"))
    assert client.get(url).url.startswith(reverse("admin:login"))


@pytest.mark.parametrize(
    ("minutes", "words"),
    [(0, "under a minute"), (1, "1 min"), (59, "59 min"), (60, "1 h 0 min"), (135, "2 h 15 min")],
)
def test_waited_times_read_as_minutes_and_hours(minutes, words):
    now = timezone.now()
    assert waited(now - timedelta(minutes=minutes, seconds=5), now) == words

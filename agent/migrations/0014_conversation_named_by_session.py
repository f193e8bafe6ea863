"""The session names its conversation, the conversation keeps no session key (issue 13).

Each session the store still holds gets its latest conversation's id under
``agent.chat.turn.SESSION_CONVERSATION``, so a returning visitor keeps their chat; then the
``session_key`` column, a login credential readable in the admin and the exports, is dropped.
"""

from importlib import import_module

from django.conf import settings
from django.db import migrations

SESSION_CONVERSATION = "chat_conversation"  # agent.chat.turn.SESSION_CONVERSATION, frozen here


def name_conversations_in_sessions(apps, schema_editor):
    Conversation = apps.get_model("agent", "Conversation")
    store = import_module(settings.SESSION_ENGINE).SessionStore
    latest = {}
    rows = (
        Conversation.objects.exclude(session_key="")
        .filter(anonymised_at__isnull=True)
        .order_by("created_at")
        .values_list("session_key", "id")
    )
    for session_key, conversation_id in rows.iterator():
        latest[session_key] = conversation_id  # ordered by age: the last one wins
    for session_key, conversation_id in latest.items():
        session = store(session_key)
        session.load()  # an expired or deleted session loads without a key: skip it
        if session.session_key is None:
            continue
        session[SESSION_CONVERSATION] = str(conversation_id)
        session.save()


class Migration(migrations.Migration):

    dependencies = [
        ("agent", "0013_seed_listing_classifiers"),
        ("sessions", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(name_conversations_in_sessions, migrations.RunPython.noop),
        migrations.RemoveField(model_name="conversation", name="session_key"),
    ]

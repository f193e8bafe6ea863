"""Migration 0014: each stored session gets its latest conversation's id; the session key
column goes (issue 13, section 2)."""

from datetime import timedelta

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("agent", "0013_seed_listing_classifiers")]
AFTER = [("agent", "0014_conversation_named_by_session")]


@pytest.mark.django_db(transaction=True)
def test_each_live_session_is_given_its_latest_conversation():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps.get_model("agent", "Conversation")
    session = SessionStore()
    session["chat"] = True
    session.save()
    first = old.objects.create(session_key=session.session_key)
    latest = old.objects.create(session_key=session.session_key)
    old.objects.filter(pk=first.pk).update(created_at=latest.created_at - timedelta(days=1))
    old.objects.create(session_key="gone-gone-gone-gone")  # a session the store lost
    try:
        executor = MigrationExecutor(connection)
        executor.migrate(AFTER)
        data = SessionStore(session.session_key).load()
        assert data["chat_conversation"] == str(latest.id) != str(first.id)
        columns = [c.name for c in connection.introspection.get_table_description(
            connection.cursor(), "agent_conversation")]
        assert "session_key" not in columns
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())

"""The enabled classifiers are read once and kept until the configuration changes, in this
process or another (the version stamp of migration 0010)."""

import psycopg
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agent.models import ClassifierConfig, Endpoint, config_stamp

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("classifier_rows")]


def names(stamp=None):
    return [c.name for c in ClassifierConfig.enabled_classifiers(stamp)]


def other_process_runs(sql: str) -> None:
    """``sql`` committed on a connection of its own, as another app process or psql would."""
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
        other.execute(sql)


def test_a_second_read_with_the_stamp_costs_no_query():
    first = names()
    with CaptureQueriesContext(connection) as queries:
        assert names(config_stamp()) == first
    assert len(queries) == 1  # the stamp itself; a turn reads it inside its history query


def test_an_admin_save_and_a_delete_move_the_stamp():
    before = names()
    assert "pricing" in before
    row = ClassifierConfig.objects.get(name="pricing")
    row.enabled = False
    row.save()
    assert "pricing" not in names()
    row.enabled = True
    row.save()
    ClassifierConfig.objects.filter(name="scheduling").delete()
    assert names() == [name for name in before if name != "scheduling"]


def test_a_change_by_another_process_or_a_queryset_update_is_seen():
    assert "listing_question" in names()
    other_process_runs("UPDATE agent_classifierconfig SET enabled = false "
                       "WHERE name = 'listing_question'")
    assert "listing_question" not in names()
    ClassifierConfig.objects.filter(name="listing_question").update(enabled=True)
    assert "listing_question" in names()


def test_an_endpoint_edit_reaches_the_cached_classifiers():
    assert {c.server.max_in_flight for c in ClassifierConfig.enabled_classifiers()} != {3}
    endpoint = Endpoint.objects.get(name="default")
    endpoint.max_in_flight = 3
    endpoint.save()
    assert {c.server.max_in_flight for c in ClassifierConfig.enabled_classifiers()} == {3}

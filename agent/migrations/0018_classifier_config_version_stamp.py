"""A version stamp of the classifier configuration, moved by PostgreSQL on every change.

Every statement that inserts, updates, deletes or truncates rows of agent_classifierconfig or
agent_endpoint (the admin, a queryset ``update()``, a shell, another process) sets the one row
of ``agent_config_version`` to the next value of a sequence, in the same transaction. So the
stamp becomes visible exactly when the change does, and since ``nextval`` is never rolled
back, a committed stamp names one state of the rows. ``ClassifierConfig.enabled_classifiers``
keeps its answer until the stamp moves.
"""

from django.db import migrations

TABLES = ("agent_classifierconfig", "agent_endpoint")

FORWARD = [
    "CREATE SEQUENCE agent_config_version_seq",
    "CREATE TABLE agent_config_version (stamp bigint NOT NULL)",
    "INSERT INTO agent_config_version VALUES (nextval('agent_config_version_seq'))",
    """
    CREATE FUNCTION agent_bump_config_version() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE agent_config_version SET stamp = nextval('agent_config_version_seq');
        RETURN NULL;
    END $$
    """,
    *(
        f"CREATE TRIGGER {table}_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION agent_bump_config_version()"
        for table in TABLES
    ),
]
BACKWARD = [
    *(f"DROP TRIGGER IF EXISTS {table}_version ON {table}" for table in TABLES),
    "DROP FUNCTION IF EXISTS agent_bump_config_version()",
    "DROP TABLE IF EXISTS agent_config_version",
    "DROP SEQUENCE IF EXISTS agent_config_version_seq",
]


class Migration(migrations.Migration):
    dependencies = [("agent", "0017_leads_and_webhooks")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]

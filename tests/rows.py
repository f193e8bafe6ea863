"""Rows that tests make again and again, importable as ``rows`` (pytest puts ``tests/`` on
``sys.path``; ``conftest`` is ambiguous there, with ``tests/browser/conftest.py`` beside it)."""


def seed_classifier_rows() -> dict:
    """Make the default endpoint and the built-in classifiers as rows, as migration 0005 seeds
    them (again: transactional tests empty every table when they end); returns them by name.
    Module-scoped fixtures call it inside ``django_db_blocker.unblock()``."""
    from agent.llm.classifiers import CLASSIFIERS
    from agent.models import ClassifierConfig, Endpoint

    endpoint, _ = Endpoint.objects.get_or_create(
        name="default", defaults={"api_key_env": "LLM_API_KEY"}
    )
    for priority, classifier in enumerate(CLASSIFIERS, start=1):
        ClassifierConfig.objects.get_or_create(
            name=classifier.name,
            defaults={
                "endpoint": endpoint, "priority": priority * 10,
                "system_prompt": classifier.instructions, "output_schema": classifier.schema,
            },
        )
    return {row.name: row for row in ClassifierConfig.objects.select_related("endpoint")}


def chat_staff(user):
    """Put ``user`` in the "Chat staff" group of migration agent.0011 (made again, with the
    migration's permissions, when a transactional test's flush removed it); returns the user."""
    import importlib

    from django.contrib.auth.models import Group, Permission
    from django.db.models import Q

    migration = importlib.import_module("agent.migrations.0011_chat_staff_group")
    group, created = Group.objects.get_or_create(name=migration.GROUP)
    if created:
        wanted = Q()
        for app_label, codename in migration.PERMISSIONS:
            wanted |= Q(content_type__app_label=app_label, codename=codename)
        group.permissions.set(Permission.objects.filter(wanted))
    user.groups.add(group)
    return user

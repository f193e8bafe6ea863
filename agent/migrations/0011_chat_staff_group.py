"""The "Chat staff" group: the usual powers of someone who answers chats (issue 13).

Queue, transcripts and taking over chats (``agent.staff.access``), the classifier calls of a
transcript, and the listings, realtors and appointments a visitor asks about, confirming or
cancelling calls. Not the LLM endpoints and classifier configs (``agent.manage_llm``): those
stay with superusers. Add staff users to the group in the admin (Authentication > Groups).

Django creates permissions after all migrations ran, so on a fresh database this one creates
them first for the two apps.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "Chat staff"
PERMISSIONS = [
    ("agent", "view_handoff"),
    ("agent", "handle_handoff"),
    ("agent", "view_conversation"),
    ("agent", "view_classifiercall"),
    ("listings", "view_listing"),
    ("listings", "view_realtor"),
    ("listings", "view_appointment"),
    ("listings", "change_appointment"),
]


def create_group(apps, schema_editor):
    for label in ("agent", "listings"):
        app_config = apps.get_app_config(label)
        app_config.models_module = True  # create_permissions skips an app without models
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=GROUP)
    for app_label, codename in PERMISSIONS:
        group.permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )


def delete_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=GROUP).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("agent", "0010_llm_and_handoff_permissions"),
        ("listings", "0002_realtor_hours_and_no_double_booking"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_group, delete_group)]

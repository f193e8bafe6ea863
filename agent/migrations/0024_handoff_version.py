from django.db import migrations, models


class Migration(migrations.Migration):
    """A handoff's ``version`` and the sequence numbering the staff queue's counts, so staff
    screens order the ``queue`` and ``queue_change`` frames (README, "Staff socket")."""

    dependencies = [
        ("agent", "0023_conversation_qualification_and_route"),
    ]

    operations = [
        migrations.AddField(
            model_name="handoff",
            name="version",
            field=models.PositiveIntegerField(
                default=1,
                editable=False,
                help_text="1 when queued, one more at each claim, release and resolve (under "
                "the row's lock): staff screens apply a queue_change only if it is newer than "
                "what they hold.",
            ),
        ),
        migrations.RunSQL(
            "CREATE SEQUENCE agent_handoff_count_seq",
            "DROP SEQUENCE agent_handoff_count_seq",
        ),
    ]

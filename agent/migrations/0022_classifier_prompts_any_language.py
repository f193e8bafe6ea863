"""Tell the six seeded classifiers that a message may be in any language (English, Spanish or
another): the sentence goes after the prompts' first one, in rows staff have not edited
(version 1, the seeded opening). Their version stays 1, which marks a row staff never
edited; a call logged before this migration ran with the prompt without the sentence.

The texts are copies, frozen here: a migration must not import code that changes later.
"""

from django.db import migrations

OPENER = "You classify messages for a real-estate agency's chat. "
SENTENCE = "The messages may be in any language (English, Spanish or another). "
NAMES = ("pricing", "appointment_change", "scheduling", "listing_facts", "listing_search",
         "listing_question")


def add_sentence(apps, schema_editor):
    ClassifierConfig = apps.get_model("agent", "ClassifierConfig")
    for row in ClassifierConfig.objects.filter(name__in=NAMES, version=1):
        if row.system_prompt.startswith(OPENER) and SENTENCE not in row.system_prompt:
            ClassifierConfig.objects.filter(pk=row.pk).update(
                system_prompt=OPENER + SENTENCE + row.system_prompt[len(OPENER):])


def remove_sentence(apps, schema_editor):
    ClassifierConfig = apps.get_model("agent", "ClassifierConfig")
    for row in ClassifierConfig.objects.filter(name__in=NAMES, version=1):
        if row.system_prompt.startswith(OPENER + SENTENCE):
            ClassifierConfig.objects.filter(pk=row.pk).update(
                system_prompt=OPENER + row.system_prompt[len(OPENER + SENTENCE):])


class Migration(migrations.Migration):

    dependencies = [
        ("agent", "0021_conversation_language"),
    ]

    operations = [migrations.RunPython(add_sentence, remove_sentence)]

"""Seed the default LLM endpoint and the four classifiers of agent/classifiers.py.

The texts are copies, frozen here: a migration must not import code that changes later. Rows
staff already have are left as they are.
"""

from django.db import migrations

NULLABLE = lambda pattern: {"anyOf": [{"type": "string", "pattern": pattern}, {"type": "null"}]}  # noqa: E731

CLASSIFIERS = [
    {
        "name": "pricing",
        "priority": 10,
        "system_prompt": (
            "You classify messages for a real-estate agency's chat. Decide whether the visitor's "
            "latest message asks for the price of a listing, counting a reply that gives the listing "
            "the assistant just asked for. Listings have 6-digit ids. Set listing_id to the 6-digit "
            "id the visitor means, taken from the conversation, or null if none is given. "
            'Answer with JSON only: {"asks_price": true|false, "listing_id": "123456"|null}.'
        ),
        "output_schema": {
            "type": "object",
            "properties": {"asks_price": {"type": "boolean"}, "listing_id": NULLABLE("^[0-9]{6}$")},
            "required": ["asks_price", "listing_id"],
            "additionalProperties": False,
        },
    },
    {
        "name": "appointment_change",
        "priority": 15,
        "system_prompt": (
            "You classify messages for a real-estate agency's chat. Decide whether the visitor's "
            "latest message asks to cancel or to move (reschedule) a call with an agent that is "
            "already booked, counting a reply that gives the new day or time the assistant just "
            "asked for. Booking a new call is none. "
            'Answer with JSON only: {"action": "none"|"cancel"|"move"}.'
        ),
        "output_schema": {
            "type": "object",
            "properties": {"action": {"type": "string", "enum": ["none", "cancel", "move"]}},
            "required": ["action"],
            "additionalProperties": False,
        },
    },
    {
        "name": "scheduling",
        "priority": 20,
        "system_prompt": (
            "You classify messages for a real-estate agency's chat. Today is {today}. Decide "
            "whether the visitor's latest message asks to schedule a call with an agent, counting a "
            "reply that gives the day or time the assistant just asked for and a request to move a "
            "call already booked to another day or time. Resolve relative dates "
            "such as 'tomorrow' or 'next Tuesday' against today's date. Set date (YYYY-MM-DD) and "
            "time (24-hour HH:MM) to when the visitor wants the call, or null when not given. "
            'Answer with JSON only: {"wants_call": true|false, "date": "YYYY-MM-DD"|null, '
            '"time": "HH:MM"|null}.'
        ),
        "output_schema": {
            "type": "object",
            "properties": {
                "wants_call": {"type": "boolean"},
                "date": NULLABLE("^[0-9]{4}-[0-9]{2}-[0-9]{2}$"),
                "time": NULLABLE("^[0-9]{2}:[0-9]{2}$"),
            },
            "required": ["wants_call", "date", "time"],
            "additionalProperties": False,
        },
    },
    {
        "name": "listing_question",
        "priority": 30,
        "system_prompt": (
            "You classify messages for a real-estate agency's chat. Decide whether the visitor's "
            "latest message is a question about a listing or property: its price, features, "
            "location, viewing or status. Greetings, small talk, other topics and requests to "
            "talk to an agent are not. "
            'Answer with JSON only: {"is_listing_question": true|false}.'
        ),
        "output_schema": {
            "type": "object",
            "properties": {"is_listing_question": {"type": "boolean"}},
            "required": ["is_listing_question"],
            "additionalProperties": False,
        },
    },
]


def seed(apps, schema_editor):
    Endpoint = apps.get_model("agent", "Endpoint")
    ClassifierConfig = apps.get_model("agent", "ClassifierConfig")
    endpoint, _ = Endpoint.objects.get_or_create(
        name="default", defaults={"base_url": "", "api_style": "openai", "api_key_env": "LLM_API_KEY"}
    )
    for row in CLASSIFIERS:
        ClassifierConfig.objects.get_or_create(
            name=row["name"],
            defaults={**row, "endpoint": endpoint, "max_tokens": 64, "temperature": 0.0},
        )


def unseed(apps, schema_editor):
    apps.get_model("agent", "ClassifierConfig").objects.filter(
        name__in=[row["name"] for row in CLASSIFIERS], version=1
    ).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("agent", "0004_classifier_configs"),
    ]

    operations = [migrations.RunPython(seed, unseed)]

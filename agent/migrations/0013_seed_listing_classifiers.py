"""Seed the listing_facts and listing_search classifiers (agent/llm/listing_classifiers.py)
between scheduling and listing_question, for the reasons in agent/llm/classifiers.py.

The texts are copies, frozen here: a migration must not import code that changes later. Rows
staff already have are left as they are.
"""

from django.db import migrations

CLASSIFIERS = [{'name': 'listing_facts',
  'priority': 22,
  'max_tokens': 96,
  'system_prompt': "You classify messages for a real-estate agency's chat. Decide whether the "
                   "visitor's latest message asks about the facts of ONE listing (the one "
                   'named by its 6-digit id in the conversation, or the one the visitor is '
                   "looking at, or 'this one', 'it'). Asking for homes that match criteria, or "
                   'for a price, is not. Set listing_id to the 6-digit id meant if the '
                   'conversation gives one, else null. Set facts to what is asked, among: '
                   'bedrooms, bathrooms, area, address, year_built, lot, parking, hoa, pets, '
                   "features, status, open_houses, type; 'other' for anything else. Set "
                   'features to the features asked about, among: garage, pool, garden, '
                   'balcony, fireplace, basement, waterfront, elevator, air_conditioning, '
                   'laundry_in_unit. Set about_people to true when the message asks about the '
                   'people of a place: safety or crime, schools ranked by who attends, '
                   'religion, ethnicity, nationality, families or children nearby (then '
                   'asks_facts may be false). Answer with JSON only: {"asks_facts": '
                   'true|false, "listing_id": "123456"|null, "facts": [...], "features": '
                   '[...], "about_people": true|false}.',
  'output_schema': {'type': 'object',
                    'properties': {'asks_facts': {'type': 'boolean'},
                                   'listing_id': {'anyOf': [{'type': 'string',
                                                             'pattern': '^[0-9]{6}$'},
                                                            {'type': 'null'}]},
                                   'facts': {'type': 'array',
                                             'items': {'type': 'string',
                                                       'enum': ['bedrooms',
                                                                'bathrooms',
                                                                'area',
                                                                'address',
                                                                'year_built',
                                                                'lot',
                                                                'parking',
                                                                'hoa',
                                                                'pets',
                                                                'features',
                                                                'status',
                                                                'open_houses',
                                                                'type',
                                                                'other']},
                                             'maxItems': 14},
                                   'features': {'type': 'array',
                                                'items': {'type': 'string',
                                                          'enum': ['garage',
                                                                   'pool',
                                                                   'garden',
                                                                   'balcony',
                                                                   'fireplace',
                                                                   'basement',
                                                                   'waterfront',
                                                                   'elevator',
                                                                   'air_conditioning',
                                                                   'laundry_in_unit']},
                                                'maxItems': 10},
                                   'about_people': {'type': 'boolean'}},
                    'required': ['asks_facts',
                                 'listing_id',
                                 'facts',
                                 'features',
                                 'about_people'],
                    'additionalProperties': False}},
 {'name': 'listing_search',
  'priority': 24,
  'max_tokens': 128,
  'system_prompt': "You classify messages for a real-estate agency's chat. Decide whether the "
                   "visitor's latest message asks to see or find listings (homes for sale) "
                   'matching criteria, counting a reply that refines or adds to a search '
                   "('what about with a garage?', 'under 400k then'). A question about one "
                   "listing's facts or price is not. Give only the criteria the LATEST message "
                   'states, others null or empty: place (a town or neighbourhood, as written), '
                   "min_price and max_price (whole dollars: '500k' is 500000), min_bedrooms, "
                   'min_bathrooms, property_type (house, condo, townhouse, apartment, land), '
                   'features (garage, pool, garden, balcony, fireplace, basement, waterfront, '
                   'elevator, air_conditioning, laundry_in_unit). Answer with JSON only: '
                   '{"wants_listings": true|false, "place": "..."|null, "min_price": 0|null, '
                   '"max_price": 0|null, "min_bedrooms": 0|null, "min_bathrooms": 0|null, '
                   '"property_type": "house"|null, "features": [...]}.',
  'output_schema': {'type': 'object',
                    'properties': {'wants_listings': {'type': 'boolean'},
                                   'place': {'anyOf': [{'type': 'string', 'maxLength': 60},
                                                       {'type': 'null'}]},
                                   'min_price': {'anyOf': [{'type': 'integer',
                                                            'minimum': 0,
                                                            'maximum': 1000000000},
                                                           {'type': 'null'}]},
                                   'max_price': {'anyOf': [{'type': 'integer',
                                                            'minimum': 0,
                                                            'maximum': 1000000000},
                                                           {'type': 'null'}]},
                                   'min_bedrooms': {'anyOf': [{'type': 'integer',
                                                               'minimum': 0,
                                                               'maximum': 50},
                                                              {'type': 'null'}]},
                                   'min_bathrooms': {'anyOf': [{'type': 'number',
                                                                'minimum': 0,
                                                                'maximum': 50},
                                                               {'type': 'null'}]},
                                   'property_type': {'anyOf': [{'type': 'string',
                                                                'enum': ['house',
                                                                         'condo',
                                                                         'townhouse',
                                                                         'apartment',
                                                                         'land']},
                                                               {'type': 'null'}]},
                                   'features': {'type': 'array',
                                                'items': {'type': 'string',
                                                          'enum': ['garage',
                                                                   'pool',
                                                                   'garden',
                                                                   'balcony',
                                                                   'fireplace',
                                                                   'basement',
                                                                   'waterfront',
                                                                   'elevator',
                                                                   'air_conditioning',
                                                                   'laundry_in_unit']},
                                                'maxItems': 10}},
                    'required': ['wants_listings',
                                 'place',
                                 'min_price',
                                 'max_price',
                                 'min_bedrooms',
                                 'min_bathrooms',
                                 'property_type',
                                 'features'],
                    'additionalProperties': False}}]


def seed(apps, schema_editor):
    Endpoint = apps.get_model("agent", "Endpoint")
    ClassifierConfig = apps.get_model("agent", "ClassifierConfig")
    endpoint, _ = Endpoint.objects.get_or_create(
        name="default", defaults={"base_url": "", "api_style": "openai", "api_key_env": "LLM_API_KEY"}
    )
    for row in CLASSIFIERS:
        ClassifierConfig.objects.get_or_create(
            name=row["name"], defaults={**row, "endpoint": endpoint, "temperature": 0.0}
        )


def unseed(apps, schema_editor):
    apps.get_model("agent", "ClassifierConfig").objects.filter(
        name__in=[row["name"] for row in CLASSIFIERS], version=1
    ).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("agent", "0012_listing_search_routes_and_page_listing"),
    ]

    operations = [migrations.RunPython(seed, unseed)]

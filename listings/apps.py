from django.apps import AppConfig


class ListingsConfig(AppConfig):
    """Listings, the realtors who take calls, and their appointments."""

    name = "listings"

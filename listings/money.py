"""Amounts of money as the active language writes them, by Babel (CLDR): "350.000 US$" in
Spanish. English keeps the agency's own style (``Listing.formatted_price``: "$350,000")."""

from decimal import Decimal

from babel.core import Locale
from babel.numbers import format_currency

from listings.agencytime import babel_locale


def written(amount: Decimal | int, currency: str) -> str:
    """``amount`` of ``currency`` (an ISO 4217 code, kept whatever the language) in the active
    language's currency format, whole amounts without cents: "350.000 US$", "350.000,50 US$".

    Babel's non-breaking spaces become plain ones, so the text reads the same everywhere.
    """
    locale = babel_locale()
    pattern = Locale.parse(locale).currency_formats["standard"].pattern.split(";")[0]
    if Decimal(amount) == Decimal(amount).to_integral():
        pattern = pattern.replace(".00", "")
    text = format_currency(
        amount, currency, format=pattern, locale=locale, currency_digits=False
    )
    return text.replace("\u00a0", " ").replace("\u202f", " ")

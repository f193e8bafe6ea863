"""Contact details in a visitor's message: phone numbers and email addresses, no LLM needed.

Phone numbers are found and checked by ``phonenumbers`` (Google's libphonenumber): a number
must be valid for its region, ``PHONE_REGION`` (default US) when written without a country
code, and is stored in E.164 (``+12015550142``). Emails are checked by Django's
``EmailValidator``.
"""

import re
from dataclasses import dataclass

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator

_EMAIL_CANDIDATE = re.compile(r"[^\s<>()\[\],;:\"']+@[^\s<>()\[\],;:\"']+")
_validate_email = EmailValidator()


@dataclass(frozen=True)
class Contact:
    """What a message holds: ``phone`` in E.164 and ``email`` lower-cased domain, or ""."""

    phone: str = ""
    email: str = ""

    def __bool__(self) -> bool:
        return bool(self.phone or self.email)


def find_phone(text: str, region: str | None = None) -> str:
    """The first valid phone number in ``text``, in E.164, or "".

    Args:
        text: the visitor's message.
        region: ISO 3166 region for numbers without ``+country``; ``PHONE_REGION`` by default.
    """
    matcher = phonenumbers.PhoneNumberMatcher(
        text, region or settings.PHONE_REGION, leniency=phonenumbers.Leniency.VALID
    )
    for match in matcher:
        return phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
    return ""


def find_email(text: str) -> str:
    """The first valid email address in ``text`` (trailing punctuation dropped), or ""."""
    for candidate in _EMAIL_CANDIDATE.findall(text):
        candidate = candidate.rstrip(".!?")
        try:
            _validate_email(candidate)
        except ValidationError:
            continue
        local, _, domain = candidate.rpartition("@")
        return f"{local}@{domain.lower()}"
    return ""


def find_contact(text: str) -> Contact:
    """The phone number and email address a message gives, each "" when absent or invalid."""
    return Contact(phone=find_phone(text), email=find_email(text))


def display_phone(e164: str) -> str:
    """A stored E.164 number written for people: ``+1 201-555-0142``."""
    try:
        number = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)

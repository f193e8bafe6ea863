"""Shared fixtures. Tests never leave the machine: any connection beyond loopback fails."""

import ipaddress
import socket

import pytest


def _is_local(address) -> bool:
    if isinstance(address, (str, bytes)):  # a Unix socket path
        return True
    host = address[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fail any socket connection to an address other than loopback or a Unix socket."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guard(address):
        if not _is_local(address):
            raise ConnectionRefusedError(f"tests may not leave the machine: {address!r}")

    def connect(self, address):
        guard(address)
        return real_connect(self, address)

    def connect_ex(self, address):
        guard(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


@pytest.fixture
def listings(db):
    """The tutorial's three listings: 123456 at $350,000, 654321 at $450,000, 112233 at $550,000."""
    from listings.models import Listing

    return {
        listing_id: Listing.objects.create(
            listing_id=listing_id, address=f"{n} Harbor Street", price=price, bedrooms=3
        )
        for n, (listing_id, price) in enumerate(
            [("123456", 350_000), ("654321", 450_000), ("112233", 550_000)], start=1
        )
    }


@pytest.fixture
def realtors(db):
    """Anna and Ben, two staff users who take calls."""
    from django.contrib.auth.models import User

    from listings.models import Realtor

    return [
        Realtor.objects.create(
            user=User.objects.create_user(username, first_name=first, last_name=last, is_staff=True)
        )
        for username, first, last in [("anna", "Anna", "Novak"), ("ben", "Ben", "Carter")]
    ]


@pytest.fixture
def conversation(db):
    """An empty conversation of a visitor's session."""
    from agent.models import Conversation

    return Conversation.objects.create(session_key="visitor-session")

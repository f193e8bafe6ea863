"""Outbound HTTP looks up no module per request.

httpcore asks ``import sniffio`` on every async request to learn the event loop's library;
without sniffio installed that import fails each time, and a failed import is not cached:
Python searches every ``sys.path`` folder again, per request. Under load in daphne that cost
about 7% of the process's CPU (py-spy, bench/README.md), so sniffio is a dependency.
"""

import sys

import httpx


class RecordingFinder:
    """A meta-path finder that finds nothing and records what it was asked for."""

    def __init__(self):
        self.asked: list[str] = []

    def find_spec(self, name, path=None, target=None):
        self.asked.append(name)
        return None


async def test_a_request_after_the_first_looks_up_no_module(standin):
    finder = RecordingFinder()
    async with httpx.AsyncClient(base_url=standin.base_url) as client:
        (await client.get("models")).raise_for_status()  # imports what the first call needs
        sys.meta_path.insert(0, finder)
        try:
            for _ in range(3):
                (await client.get("models")).raise_for_status()
        finally:
            sys.meta_path.remove(finder)
    assert finder.asked == []

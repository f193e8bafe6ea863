"""The Spanish catalogue is complete: every visitor-facing string the code and templates mark
has a translation, none fuzzy, and the placeholders match."""

import shutil
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.pofile import read_po
from django.core.management import call_command

from tests import ROOT

PO = ROOT / "locale" / "es" / "LC_MESSAGES" / "django.po"
SOURCES = ("agent", "listings", "realestate", "templates", "static")


def entries(path: Path) -> dict:
    """The catalogue's entries by msgid (a plural's by its singular), header left out."""
    with path.open("rb") as source:
        catalogue = read_po(source)
    assert not catalogue.obsolete, f"obsolete entries: {list(catalogue.obsolete)}"
    return {(m.id[0] if isinstance(m.id, tuple) else m.id): m for m in catalogue if m.id}


def test_every_committed_entry_is_translated_and_not_fuzzy():
    found = entries(PO)
    assert len(found) > 200
    untranslated = [key for key, m in found.items()
                    if not (all(m.string) if isinstance(m.string, tuple) else m.string)]
    assert untranslated == []
    assert [key for key, m in found.items() if m.fuzzy] == []
    for key, m in found.items():  # the same %(name)s placeholders, so formatting cannot fail
        for text in (m.string if isinstance(m.string, tuple) else (m.string,)):
            assert sorted(_names(text)) == sorted(_names(key)) or isinstance(m.id, tuple), key


def _names(text: str) -> list[str]:
    import re

    return re.findall(r"%\((\w+)\)s", text)


@pytest.mark.skipif(shutil.which("xgettext") is None, reason="needs GNU gettext's xgettext")
def test_makemessages_finds_no_string_the_catalogue_lacks(tmp_path, settings, monkeypatch):
    """Runs ``makemessages`` (as ``make messages`` does) on a copy of the sources."""
    for name in SOURCES:
        shutil.copytree(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "locale", tmp_path / "locale")
    settings.LOCALE_PATHS = [tmp_path / "locale"]
    monkeypatch.chdir(tmp_path)
    call_command("makemessages", locale=["es"], no_location=True, verbosity=0)
    assert entries(tmp_path / "locale" / "es" / "LC_MESSAGES" / "django.po").keys() == (
        entries(PO).keys())
    fresh = entries(tmp_path / "locale" / "es" / "LC_MESSAGES" / "django.po")
    assert [key for key, m in fresh.items() if m.fuzzy or not m.string] == []


def test_every_python_string_marked_for_translation_is_in_the_catalogue():
    """Pure Python (Babel's extractor), so it runs where xgettext is missing too."""
    keywords = {**DEFAULT_KEYWORDS, "gettext_noop": None, "gettext_lazy": None}
    known = entries(PO)
    missing = []
    for name in ("agent", "listings", "realestate"):
        for _file, _line, message, _comments, _context in extract_from_dir(
            ROOT / name, method_map=[("**.py", "python")], keywords=keywords
        ):
            key = message[0] if isinstance(message, tuple) else message
            if key and key not in known:
                missing.append(key)
    assert missing == []

"""Compile the gettext catalogues (``locale/<lang>/LC_MESSAGES/django.po`` to ``.mo``) with
Babel, so ``make install`` needs no system ``msgfmt`` (Django's ``compilemessages`` does).

Usage: ``python -m realestate.dev.catalogues [PO ...]`` (all of ``locale/`` by default).
Fuzzy entries are left out, as ``msgfmt`` leaves them out.
"""

import logging
import sys
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

logger = logging.getLogger(__name__)

LOCALE = Path(__file__).resolve().parents[2] / "locale"


def compile_catalogue(po: Path) -> Path:
    """Write ``po``'s ``.mo`` beside it.

    Returns:
        The ``.mo`` path.
    Raises:
        babel.messages.pofile.PoFileError: the ``.po`` does not parse.
    """
    with po.open("rb") as source:
        catalogue = read_po(source, abort_invalid=True)
    mo = po.with_suffix(".mo")
    with mo.open("wb") as target:
        write_mo(target, catalogue, use_fuzzy=False)
    return mo


def main(paths: list[str]) -> int:
    """Compile the given ``.po`` files, or every one under ``locale/``; returns 0."""
    for po in [Path(p) for p in paths] or sorted(LOCALE.glob("*/LC_MESSAGES/*.po")):
        print(f"compiled {compile_catalogue(po)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

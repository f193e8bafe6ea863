"""The test suite, a package mirroring the product's: ``tests/chat/`` tests ``agent/chat/``, and
so on; ``tests/system/`` and ``tests/browser/`` are the slow tier (marker ``system``)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository, where manage.py is
EVAL_FILE = ROOT.parent / "shared" / "eval" / "conversations.jsonl"  # ../shared beside it
LISTINGS_EVAL_FILE = ROOT / "tests" / "data" / "listings_eval.jsonl"  # the project's own
LANGUAGES_EVAL_FILE = ROOT / "tests" / "data" / "languages_eval.jsonl"  # Spanish and mixed

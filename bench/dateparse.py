"""What dateparser costs a turn whose message answers offered call times (issue 13).

    .venv/bin/python bench/dateparse.py [--runs 5]

Times ``agent.chat.dialogue.mentioned_in`` (dateparser on at most ``DATE_TEXT`` characters
around the first date word) against the same dateparser calls on the whole message, as the
router ran them before, for a short real answer and two crafted 2,000-character messages.
Prints the best of ``--runs`` in ms, and each as a ratio to the short answer measured in the
same run. No database: the function is pure CPU work.
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realestate.settings")

import django  # noqa: E402

django.setup()

from datetime import datetime  # noqa: E402
from zoneinfo import ZoneInfo  # noqa: E402

from agent.chat import dialogue  # noqa: E402

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("America/New_York"))
MESSAGES = {
    "short answer": "Thursday at 3pm works for me",
    "'1 2 ... 10' x 2,000 ch": (" ".join(str(n) for n in range(1, 11)) + " ") * 100,
    "months+times x 2,000 ch": ("march may june 3pm 4:30 the 5th " * 70)[:2000],
    "'monday 1 2 ... 10' 2,000": ("monday " + " ".join(str(n) for n in range(1, 11)) * 100)[:2000],
}


def unbounded(text: str, now: datetime):
    """``mentioned_in`` before issue 13: dateparser on the whole message."""
    real = dialogue.date_text
    dialogue.date_text = lambda t: t
    try:
        return dialogue.mentioned_in(text, now)
    finally:
        dialogue.date_text = real


def best_ms(func, text: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        func(text, NOW)
        times.append((time.perf_counter() - started) * 1000)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    dialogue.mentioned_in("warm up on Monday at 9am", NOW)
    peer = best_ms(dialogue.mentioned_in, MESSAGES["short answer"], runs)
    print(f"short answer, bounded: {peer:.1f} ms (the peer of the ratios)")
    print(f"{'message':<28}{'whole text':>12}{'ratio':>8}{'bounded':>11}{'ratio':>8}")
    for name, text in MESSAGES.items():
        whole = best_ms(unbounded, text, runs)
        bounded = best_ms(dialogue.mentioned_in, text, runs)
        print(
            f"{name:<28}{whole:>9.1f} ms{whole / peer:>7.1f}x"
            f"{bounded:>8.1f} ms{bounded / peer:>7.1f}x"
        )


if __name__ == "__main__":
    main()

"""What one handoff change costs the staff side, by how many handoffs are open (issue 16).

    .venv/bin/python bench/staff_queue.py [--runs 20]

Before: every change re-sent the bounded queue frame (``queue_frame()``: the counts and the
oldest 50 open handoffs, up to 24,000 bytes). Now: a ``queue_change`` frame of the changed
handoff (its row read again with its relations, as a claim does, and ``queue_counts()``).
Both are measured here, in the same run, with 1 to 1,000 handoffs open, each of a visitor
message and a reason of 200 characters, on a fresh ``realestate_staff_queue`` database of
the embedded PostgreSQL (or ``DATABASE_URL``). Prints the best of ``--runs`` in ms (database
round trips and JSON encoding, as the database thread spends them), the frame's bytes, and
new ÷ old.
"""

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from realestate.dev import devdb  # noqa: E402

DATABASE = "realestate_staff_queue"
OPEN = (1, 100, 500, 1000)
TEXT = ("Is the garden south-facing, and could we see it on Saturday morning? " * 4)[:200]


def best_ms(func, runs: int) -> tuple[float, int]:
    """The best time of ``runs`` calls of ``func`` in ms, and the bytes of the frame it made."""
    times, size = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        size = len(json.dumps(func()))
        times.append((time.perf_counter() - started) * 1000)
    return min(times), size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    devdb.bench_django(DATABASE, DEBUG="false")
    from agent.models import Conversation, Handoff, Message
    from agent.staff import handoffs

    def add(n: int) -> None:
        conversations = Conversation.objects.bulk_create(
            Conversation(visitor_name="Vera Visitor", visitor_email="vera@example.com")
            for _ in range(n)
        )
        messages = Message.objects.bulk_create(
            Message(conversation=c, seq=1, role=Message.Role.USER, text=TEXT) for c in conversations
        )
        Handoff.objects.bulk_create(
            Handoff(conversation=c, message=m, reason=TEXT)
            for c, m in zip(conversations, messages, strict=True)
        )

    def change_of(pk: int):
        def change() -> dict:
            handoff = Handoff.objects.select_related("claimed_by", "message", "conversation")
            return handoffs.change_frame(handoffs.queue_item(handoff.get(pk=pk)))

        return change

    print(
        f"{'open':>5} {'whole queue ms':>15} {'bytes':>7} {'change ms':>10} {'bytes':>6} "
        f"{'new/old':>8}"
    )
    total = 0
    for n in OPEN:
        add(n - total)
        total = n
        newest = Handoff.objects.order_by("-pk").values_list("pk", flat=True).first()
        old_ms, old_bytes = best_ms(handoffs.queue_frame, args.runs)
        new_ms, new_bytes = best_ms(change_of(newest), args.runs)
        print(
            f"{n:>5} {old_ms:>15.2f} {old_bytes:>7} {new_ms:>10.2f} {new_bytes:>6} "
            f"{new_ms / old_ms:>8.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

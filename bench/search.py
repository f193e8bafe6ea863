"""The listing search's query on 100,000 listings (listings/search.py).

    .venv/bin/python bench/search.py [--listings 100000] [--runs 200]

Creates a fresh ``realestate_search`` database on the embedded PostgreSQL (or uses
``DATABASE_URL``), migrates, inserts N listings over 50 towns and 1,000 neighbourhoods (80 %
active, random prices, sizes and features, seeded so every run has the same data), runs
``VACUUM ANALYZE``, then times each search ``runs`` times, in this process through the ORM
(what a turn does): p50 and p90 in ms, and p50 as a ratio of two peers measured in the same
run: the router's price lookup by listing ID (one unique-index probe), and the same search
with index scans turned off (``enable_indexscan``, ``enable_bitmapscan``: a sequential scan).
"""

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from realestate.dev import devdb  # noqa: E402

DATABASE = "realestate_search"
FEATURES = ["garage", "pool", "garden", "balcony", "fireplace", "basement", "waterfront",
            "elevator", "air_conditioning", "laundry_in_unit"]
TYPES = ["house", "condo", "townhouse", "apartment", "land"]


def fill(count: int) -> None:
    """Insert ``count`` listings, 5,000 a batch."""
    from listings.models import Listing

    rng = random.Random(14)
    for start in range(0, count, 5000):
        Listing.objects.bulk_create(
            Listing(
                listing_id=f"{100000 + n}", address=f"{n} Road", city=f"Town {rng.randrange(50)}",
                neighbourhood=f"Hood {rng.randrange(1000)}", property_type=rng.choice(TYPES),
                price=rng.randrange(100, 2500) * 1000, bedrooms=rng.randrange(0, 7),
                area_sqft=rng.randrange(400, 6000), features=rng.sample(FEATURES, rng.randrange(5)),
                status=rng.choice(["active"] * 8 + ["sold", "under_offer"]),
            )
            for n in range(start, min(start + 5000, count))
        )


def timed(function, runs: int) -> list[float]:
    """Wall times of ``runs`` calls, in ms."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listings", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    # One plain connection: the timing is the query's.
    devdb.bench_django(DATABASE, DB_POOL_MAX_SIZE="0")
    from django.db import connection

    from listings.models import Listing
    from listings.search import Criteria, relax, search

    started = time.perf_counter()
    fill(args.listings)
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {Listing._meta.db_table}")
    print(f"{args.listings:,} listings inserted and analysed in "
          f"{time.perf_counter() - started:.0f} s; {args.runs} runs each\n")

    cases = {
        "town + budget + 3 bed": Criteria(place="town 7", max_price=500000, min_bedrooms=3),
        "neighbourhood": Criteria(place="hood 12"),
        "town + 2 features": Criteria(place="town 3", features=("pool", "garage")),
        "3 features, anywhere": Criteria(features=("pool", "waterfront", "elevator")),
        "budget + type, anywhere": Criteria(max_price=300000, property_type="condo"),
        "2 bed, anywhere (broad)": Criteria(min_bedrooms=2),
    }
    peer = timed(lambda: Listing.objects.filter(listing_id="150000").first(), args.runs)
    peer_p50 = statistics.median(peer)
    print(f"{'search':<26} {'found':>7} {'p50 ms':>7} {'p90 ms':>7} {'x price':>8} "
          f"{'seq p50':>8} {'x seq':>6}")
    print(f"{'(peer) price lookup':<26} {'1':>7} {peer_p50:7.2f} "
          f"{statistics.quantiles(peer, n=10)[-1]:7.2f}")
    for name, criteria in cases.items():
        total = search(criteria).total
        times = timed(lambda c=criteria: search(c), args.runs)
        with connection.cursor() as cursor:
            cursor.execute("SET enable_indexscan = off; SET enable_bitmapscan = off")
        seq = timed(lambda c=criteria: search(c), max(args.runs // 10, 5))
        with connection.cursor() as cursor:
            cursor.execute("RESET enable_indexscan; RESET enable_bitmapscan")
        p50 = statistics.median(times)
        print(f"{name:<26} {total:>7,} {p50:7.2f} {statistics.quantiles(times, n=10)[-1]:7.2f} "
              f"{p50 / peer_p50:8.1f} {statistics.median(seq):8.2f} "
              f"{statistics.median(seq) / p50:6.1f}")
    nothing = Criteria(place="town 7", max_price=100500, min_bedrooms=6, features=("pool",))
    assert search(nothing).total == 0
    times = timed(lambda: relax(nothing), max(args.runs // 4, 5))
    print(f"\nnothing matched: relax() p50 {statistics.median(times):.2f} ms "
          f"({statistics.median(times) / peer_p50:.1f} x price lookup), suggests "
          f"{relax(nothing).criterion}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Many seeds of tests/unit/test_lane_merges.py: random concurrent transactions on a queue's lanes.

Each seed runs STEPS random steps (open a transaction with a few puts,
claims, removals or put-backs, add to an open one, or commit one) with
ACTORS connections on a fresh FileStorage, and checks after every commit
that the lanes hold exactly the model's pending jobs.  The lane class
(node sizes) and the number of lanes vary with the seed.  Prints one line
per seed, the totals at the end (transactions committed and refused, merges
and refusals per resolver), and the first failure's seed, if any.

With ``--pairs``, runs every pair of primitive changes to one small lane
instead (test_lane_merges.run_pairs: each deletion of a run of keys and each
insertion into a gap against each other, from one snapshot, the second
committed over the first), for each small lane class, insertion order, and
with and without the root held.

Run: .venv/bin/python bench/lane_merges.py [--seeds 200] [--first 0] [--steps 400]
     [--actors 4] [--max-pending 4000] [--stop]
     .venv/bin/python bench/lane_merges.py --pairs [--size 24]
     .venv/bin/python bench/lane_merges.py --parties 20000 [--first 0]

``--parties`` runs test_lane_merges.run_parties: a random lane, then 2 to 4
transactions from one snapshot, each a few claims, puts, batches and
put-backs, committed over each other in random order.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "tests" / "unit"))

from test_lane_merges import LANE_CLASSES, run_pairs, run_parties, run_seed  # noqa: E402


def parties(first: int, trials: int) -> int:
    """run_parties in slices of 500 trials; the first failure stops it."""
    total: Counter[str] = Counter()
    started = time.monotonic()
    for start in range(first, first + trials, 500):
        with tempfile.TemporaryDirectory() as directory:
            try:
                total += run_parties(Path(directory), start, min(500, first + trials - start))
            except AssertionError:
                traceback.print_exc()
                print(f"FAILED in trials {start}..{start + 499}")
                return 1
        print(f"trials {first}..{start + 499}: {dict(sorted(total.items()))}", flush=True)
    print(f"\n{trials} trials in {time.monotonic() - started:.0f} s")
    for key, value in sorted(total.items()):
        print(f"  {key}: {value}")
    print("no failure")
    return 0


def all_pairs(size: int) -> int:
    total: Counter[str] = Counter()
    failed = []
    started = time.monotonic()
    for lane_class in LANE_CLASSES[1:]:
        for order in ("appended", "interleaved", "reversed"):
            for hold in (True, False):
                name = f"{lane_class.__name__} {order} {'held' if hold else 'not held'}"
                with tempfile.TemporaryDirectory() as directory:
                    try:
                        stats = run_pairs(Path(directory), lane_class, size, order, hold)
                    except AssertionError:
                        failed.append(name)
                        print(f"{name}: FAILED", flush=True)
                        traceback.print_exc()
                        continue
                total += stats
                shown = {k: v for k, v in sorted(stats.items()) if not k.startswith("resolve ")}
                print(f"{name}: {shown}", flush=True)
    print(f"\nall pairs in {time.monotonic() - started:.0f} s")
    for key, value in sorted(total.items()):
        print(f"  {key}: {value}")
    print(f"failed: {failed}" if failed else "no failure")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--actors", type=int, default=4)
    parser.add_argument("--max-pending", type=int, default=4000)
    parser.add_argument("--stop", action="store_true", help="stop at the first failure")
    parser.add_argument("--pairs", action="store_true", help="every pair of primitive changes")
    parser.add_argument("--size", type=int, default=24, help="keys in the lane (--pairs)")
    parser.add_argument(
        "--parties", type=int, metavar="TRIALS", help="transactions from one snapshot instead"
    )
    args = parser.parse_args()
    if args.pairs:
        return all_pairs(args.size)
    if args.parties:
        return parties(args.first, args.parties)
    total: Counter[str] = Counter()
    failed: list[int] = []
    started = time.monotonic()
    for seed in range(args.first, args.first + args.seeds):
        with tempfile.TemporaryDirectory() as directory:
            try:
                stats = run_seed(
                    seed,
                    Path(directory),
                    args.steps,
                    actors=args.actors,
                    max_pending=args.max_pending,
                )
            except Exception:
                failed.append(seed)
                print(f"seed {seed} FAILED", flush=True)
                traceback.print_exc()
                if args.stop:
                    break
                continue
        total += stats
        shown = {k: v for k, v in sorted(stats.items()) if not k.startswith("resolve ")}
        print(f"seed {seed}: {shown}", flush=True)
    print(f"\n{args.seeds} seeds in {time.monotonic() - started:.0f} s")
    for key, value in sorted(total.items()):
        print(f"  {key}: {value}")
    print(f"failed seeds: {failed}" if failed else "no failure")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmarks: `python -m benchmarks SCENARIO [--quick]`. Results: a table, and JSON in results/.

Server URLs come from TEST_POSTGRES_URL / TEST_MYSQL_URL; each run creates and drops its own
database there. Install the compared libraries with `pip install -e ".[bench,postgres]"`.
"""

import argparse
import asyncio

from benchmarks import page_with_total


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("scenario", choices=["page-with-total"])
    parser.add_argument("--rows", type=int, default=100_000, help="rows to load (default 100000)")
    parser.add_argument("--repetitions", type=int, default=200, help="interleaved rounds")
    parser.add_argument("--quick", action="store_true", help="smoke run: 5000 rows, 5 rounds")
    args = parser.parse_args()
    rows, repetitions = (5_000, 5) if args.quick else (args.rows, args.repetitions)
    if args.scenario == "page-with-total":
        asyncio.run(page_with_total.main(rows, repetitions, save_results=not args.quick))


if __name__ == "__main__":
    main()

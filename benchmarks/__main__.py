"""Benchmarks: `python -m benchmarks SCENARIO [--quick]`. Results: a table, and JSON in results/.

Server URLs come from TEST_POSTGRES_URL / TEST_MYSQL_URL; each run creates and drops its own
database there. Install the compared libraries with `pip install -e ".[bench,postgres]"`.
"""

import argparse
import asyncio
import os

from benchmarks import (
    bulk_insert,
    drivers,
    generic_plan,
    keyset_depth,
    load,
    page_with_total,
    replica_lag,
    round_trips,
    scenarios,
    sqlite_locking,
    trigram,
    uuid_keys,
    workers,
)
from benchmarks.common import save, scratch_database


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "scenario",
        choices=[
            "orm",
            "page-with-total",
            "load",
            "http",
            "sqlite-locking",
            "generic-plan",
            "replica-lag",
            "workers",
            "drivers",
            "uuid-keys",
            "trigram",
            "round-trips",
            "keyset-depth",
            "bulk-insert",
        ],
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql", "mysql"], default="postgresql")
    parser.add_argument("--rows", type=int, default=100_000, help="rows to load (default 100000)")
    parser.add_argument("--repetitions", type=int, default=200, help="interleaved rounds")
    parser.add_argument("--clients", type=int, default=50, help="load: concurrent clients")
    parser.add_argument("--seconds", type=float, default=20.0, help="load: duration")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument(
        "--pgbouncer", action="store_true", help="workers: through TEST_PGBOUNCER_URL"
    )
    args = parser.parse_args()
    rows, repetitions = (5_000, 5) if args.quick else (args.rows, args.repetitions)
    if args.scenario in ("round-trips", "keyset-depth", "bulk-insert"):
        asyncio.run(issue_17(args.scenario, args.db, args.rows, args.repetitions, args.quick))
    elif args.scenario == "orm":
        asyncio.run(orm(args.db, quick=args.quick))
    elif args.scenario == "uuid-keys":
        asyncio.run(uuid_keys.main(rows, save_results=not args.quick))
    elif args.scenario == "trigram":
        asyncio.run(trigram.main(rows, max(5, repetitions // 5), save_results=not args.quick))
    elif args.scenario == "drivers":
        asyncio.run(drivers.main(rows, repetitions, save_results=not args.quick))
    elif args.scenario == "workers":
        pgbouncer_url = os.environ["TEST_PGBOUNCER_URL"] if args.pgbouncer else None
        seconds = 4.0 if args.quick else args.seconds
        asyncio.run(
            workers.main(
                args.clients, seconds, pgbouncer_url=pgbouncer_url, save_results=not args.quick
            )
        )
    elif args.scenario == "replica-lag":
        asyncio.run(replica_lag.main(repetitions, save_results=not args.quick))
    elif args.scenario == "generic-plan":
        asyncio.run(generic_plan.main(rows, repetitions, save_results=not args.quick))
    elif args.scenario == "page-with-total":
        asyncio.run(page_with_total.main(rows, repetitions, save_results=not args.quick))
    elif args.scenario == "sqlite-locking":
        if args.quick:
            asyncio.run(sqlite_locking.main(hold=0.1, units=10))
        else:
            asyncio.run(sqlite_locking.main())
    elif args.scenario == "http":
        if args.quick:
            asyncio.run(load.compare_http(clients=10, seconds=2, heroes=300, save_results=False))
        else:
            asyncio.run(load.compare_http(clients=args.clients, seconds=args.seconds))
    elif args.quick:
        asyncio.run(load.main(clients=10, seconds=2, heroes=300, save_results=False))
    else:
        asyncio.run(load.main(clients=args.clients, seconds=args.seconds))


async def issue_17(scenario: str, backend: str, rows: int, repetitions: int, quick: bool) -> None:
    """round-trips: --rows heroes for the page (default 100000), --repetitions rounds (20);
    keyset-depth: --rows (100000), rounds 60; bulk-insert: 10000 rows, 7 rounds."""
    if backend == "sqlite":
        raise SystemExit(f"{scenario}: PostgreSQL or MySQL/MariaDB (--db)")
    save_results = not quick
    if scenario == "round-trips":
        if quick:
            await round_trips.main(
                backend,
                page_rows=3000,
                repetitions=3,
                levels=(0.0, 0.5),
                shapes={"20 teams x 5 heroes": (20, 5)},
                save_results=False,
            )
        else:
            reps = 20 if repetitions == 200 else repetitions  # 200: the parser's default
            await round_trips.main(backend, page_rows=rows, repetitions=reps)
    elif scenario == "keyset-depth":
        if quick:
            await keyset_depth.main(backend, 3000, 5, (1, 2, 10, 40), save_results=False)
        else:
            reps = 60 if repetitions == 200 else repetitions
            await keyset_depth.main(backend, rows, reps, save_results=save_results)
    elif quick:
        await bulk_insert.main(backend, 1000, 2, save_results=False)
    else:
        await bulk_insert.main(backend, 10_000, 7)


async def orm(backend: str, *, quick: bool) -> None:
    async with scratch_database(backend) as url:
        results = await scenarios.run_all(
            backend, url.render_as_string(hide_password=False), quick=quick
        )
    if not quick:
        print(f"saved {save('orm', backend, results)}")


if __name__ == "__main__":
    main()

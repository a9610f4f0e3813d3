"""The benchmark scripts stay runnable: a tiny run of each (timings are not checked here)."""

import importlib.util
import signal
from typing import Any

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from benchmarks import (
    bulk_insert,
    drivers,
    generic_plan,
    http_variants,
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
from examples.app.api.deps import get_session_factory
from examples.testing import app_client
from tests.conftest import Backend
from tests.test_api import create_hero, create_team


@pytest.mark.backends("postgresql")
@pytest.mark.usefixtures("backend")  # selects PostgreSQL, and fails in CI when it is missing
async def test_page_with_total_runs_and_variants_agree() -> None:
    # main() checks that every variant returns the same page and total before timing them.
    results = await page_with_total.main(rows=3000, repetitions=2, save_results=False)
    for workload in ("indexed", "icontains"):
        assert set(results[workload]) == {
            "raw asyncpg (same SQL)",
            "ServiceBase.page",
            "hand-written SQLModel",
            "advanced-alchemy",
            "FastCRUD",
        }


@pytest.mark.backends("postgresql")
@pytest.mark.usefixtures("backend")
async def test_load_runs_without_errors_and_shuts_down_gracefully() -> None:
    results = await load.main(clients=10, seconds=2, heroes=300, save_results=False)
    assert results["requests"] > 0
    assert results["errors"] == 0, results["first_errors"]
    shutdown = results["shutdown"]
    assert shutdown["streaming"] > 0  # SIGTERM came while responses were still being sent
    assert shutdown == {
        "in_flight": 20,
        "completed": 20,  # SIGTERM let every in-flight request finish
        "streaming": shutdown["streaming"],
        "exit_code": -signal.SIGTERM,  # uvicorn re-raises the signal after a clean shutdown
        "clean_log": True,  # no traceback, no "Event loop is closed"
    }


async def test_orm_scenarios_run(backend: Backend, empty_database_url: str) -> None:
    results = await scenarios.run_all(backend.name, empty_database_url, quick=True)
    relationships = results["relationships"]
    assert relationships["selectinload"]["statements"] == 2
    assert relationships["lazy (awaitable_attrs, N+1)"]["statements"] == 1 + 20  # one per parent
    assert set(results["bulk_insert"]) >= {"add_all + flush", "ORM bulk insert(), list of dicts"}
    assert "offset, page 20" in results["pagination"]


@pytest.mark.backends("postgresql")
@pytest.mark.usefixtures("backend")
async def test_http_comparison_runs_without_errors() -> None:
    results = await load.compare_http(clients=5, seconds=1, heroes=100, save_results=False)
    apps = [
        name for name in results if isinstance(results[name], dict) and "errors" in results[name]
    ]
    assert len(apps) == (8 if importlib.util.find_spec("uvloop") else 7)  # + uvloop, if installed
    for app in apps:
        assert results[app]["requests"] > 0
        assert results[app]["errors"] == 0, results[app]["first_errors"]


async def test_http_variants_answer_what_get_heroes_answers(
    backend: Backend, session: AsyncSession
) -> None:
    app = http_variants.create_app(backend.settings())
    async with app_client(app, session, get_session_factory) as client:
        teams = [await create_team(client, f"t{i}") for i in range(2)]
        power = (await client.post("/powers", json={"name": "Flight"})).json()
        for i in range(7):
            team_id = teams[i % 2]["id"] if i < 6 else None
            hero = await create_hero(client, f"h{i}", age=30 + i % 3, team_id=team_id)
            if i % 3 == 0:
                granted = {"level": 2}
                await client.put(f"/heroes/{hero['id']}/powers/{power['id']}", json=granted)
        query: dict[str, Any] = {
            "sort": "-age,name",
            "limit": 5,
            "offset": 1,
            "team": [teams[0]["name"], teams[1]["id"]],
        }
        reference = (await client.get("/heroes", params=query)).json()
        assert (len(reference["items"]), reference["total"]) == (5, 6)
        assert any(item["power_links"] for item in reference["items"])
        # /bench/heroes-autocommit can't join the test's transaction: the comparison runs it.
        for path in ("/bench/heroes-orm", "/bench/heroes-sync-deps"):
            assert (await client.get(path, params=query)).json() == reference
        flat = (await client.get("/bench/heroes-flat", params=query)).json()
        for item in reference["items"]:
            del item["team"], item["power_links"]
        assert flat == reference
        bad = await client.get("/bench/heroes-flat", params={"sort": "secret_name"})
        assert bad.status_code == 422


async def test_sqlite_locking_benchmark_runs_and_immediate_units_never_fail() -> None:
    results = await sqlite_locking.main(readers=2, hold=0.05, units=10)
    assert results["read_then_write"]["IMMEDIATE"] == {
        "units": 10,
        "failed": 0,
        "final_counter": 10,
    }
    assert set(results["reads"]) >= {"all IMMEDIATE (s)", "readers DEFERRED (s)", "ratio"}


@pytest.mark.backends("postgresql")
@pytest.mark.usefixtures("backend")
async def test_generic_plan_benchmark_runs_into_the_trap() -> None:
    results = await generic_plan.main(rows=20_000, repetitions=2, save_results=False)
    assert results["generic_plans_used"] >= 1
    assert set(results["timings"]) == {
        "rare, custom plan",
        "rare, generic plan",
        "common, custom plan",
        "common, generic plan",
    }


@pytest.mark.backends("postgresql")
@pytest.mark.usefixtures("replica_url")  # skipped or failed as the replica tests are
async def test_replica_lag_benchmark_sees_every_commit_on_the_standby() -> None:
    results = await replica_lag.main(rounds=5, save_results=False)
    assert results["rounds"] == 5
    assert 0 < results["lag_median_ms"] < 5_000


def check_workers(results: dict[str, Any]) -> None:
    # No request failed, also while every worker restarted; some may have been closed unread by
    # a stopping worker (no response byte: the client may retry), and they are counted.
    assert results["failed"] == 0, results["first_errors"]
    in_flight = results["restart_in_flight"]
    assert in_flight["completed"] == in_flight["in_flight"] == 20  # streaming at SIGHUP: finished
    assert workers.WORKERS < results["peak_connections"] <= results["budget"], results
    assert len(results["pids_after"]) == workers.WORKERS
    assert not set(results["pids_after"]) & set(results["pids_before"])  # all replaced
    assert results["clean_log"]


@pytest.mark.backends("postgresql")
@pytest.mark.usefixtures("backend")
async def test_several_workers_stay_within_their_pools_and_restart_cleanly() -> None:
    check_workers(await workers.main(clients=30, seconds=4, save_results=False))


@pytest.mark.backends("postgresql")
async def test_several_workers_behind_pgbouncer_stay_within_its_pool(pgbouncer_url: str) -> None:
    results = await workers.main(
        clients=30, seconds=4, pgbouncer_url=pgbouncer_url, save_results=False
    )
    check_workers(results)


@pytest.mark.backends("postgresql")
@pytest.mark.usefixtures("backend")
async def test_driver_comparison_runs_both_drivers_on_every_workload() -> None:
    results = await drivers.main(rows=2000, repetitions=2, save_results=False)
    for workload in ("page", "get", "insert", "update"):
        assert set(results[workload]) == {"asyncpg", "psycopg"}


@pytest.mark.backends("postgresql")
@pytest.mark.usefixtures("backend")
async def test_uuid_key_benchmark_measures_both_key_kinds() -> None:
    results = await uuid_keys.main(rows=3000, save_results=False)
    assert set(results["index_bytes"]) == {"uuid4", "uuid7"}
    assert all(size > 0 for size in results["index_bytes"].values())


@pytest.mark.backends("postgresql")
@pytest.mark.usefixtures("backend")
async def test_trigram_benchmark_agrees_and_uses_the_index() -> None:
    # main() checks that both databases return the same page and total before timing them.
    results = await trigram.main(rows=20_000, repetitions=2, save_results=False)
    assert results["index_used"]["3 letters"] is True
    for search in ("3 letters", "rare", "2 letters"):
        assert set(results[search]) == {
            "no index",
            "pg_trgm GIN index",
            "index, force_custom_plan",
            "matches",
        }
        assert results[search]["matches"] > 0


@pytest.mark.backends("postgresql", "mysql")
async def test_round_trips_variants_agree_and_the_proxy_adds_latency(backend: Backend) -> None:
    # main() checks that every loader returns the same teams and heroes, and both page variants
    # the same page and total, before timing them.
    results = await round_trips.main(
        backend.name,
        page_rows=3000,
        repetitions=2,
        levels=(0.0, 0.5),
        shapes={"20 teams x 5 heroes": (20, 5)},
        save_results=False,
    )
    direct, proxied = results["levels"]["0 ms"], results["levels"]["0.5 ms"]
    assert proxied["select_1"]["proxied_ms"] > direct["select_1"]["direct_ms"] + 0.25
    shape = proxied["20 teams x 5 heroes"]
    assert shape["selectinload"]["statements"] == 2
    assert shape["joinedload"]["statements"] == 1
    assert shape["N+1: SELECT per team"]["statements"] == 1 + 20
    assert shape["N+1: refresh(team, [heroes])"]["statements"] == 1 + 2 * 20
    # Through the proxy N+1 pays at least its 1 + 20 statements' round trips.
    added = proxied["select_1"]["added_ms"]
    assert shape["N+1: SELECT per team"]["median_ms"] > 21 * added
    many_to_one = proxied["heroes, each its team"]
    assert many_to_one["selectinload"]["statements"] == 2
    assert many_to_one["joinedload"]["statements"] == 1
    assert many_to_one["N+1: session.get(Team) per hero"]["statements"] == 1 + 20
    assert many_to_one["N+1: session.get(Team) per hero"]["median_ms"] > 21 * added
    page = proxied["page + total"]
    assert page["ServiceBase.page (1 statement)"]["statements"] == 1
    assert page["page + COUNT (2 statements)"]["statements"] == 2


@pytest.mark.backends("postgresql", "mysql")
async def test_keyset_depth_pages_agree_and_the_deep_page_is_an_index_range_scan(
    backend: Backend,
) -> None:
    results = await keyset_depth.main(backend.name, 3000, 2, (1, 2, 10, 40), save_results=False)
    assert set(results["keyset"]) == {f"keyset, page {p}" for p in (1, 2, 10, 40)}
    if backend.name == "postgresql":
        plan = results["plan_deepest"]
        assert plan["scan"] == "Index Scan"
        assert plan["index"] == "ix_hero_name"
        assert plan["index_cond"] is not None  # a range start, not a walk from the first entry
        assert plan["rows_read"] <= 60  # 51 rows (one extra for "is there a next page")


@pytest.mark.backends("postgresql", "mysql")
async def test_bulk_insert_variants_store_every_row(backend: Backend) -> None:
    results = await bulk_insert.main(backend.name, rows=500, repetitions=1, save_results=False)
    expected = {"add_all + flush", "ServiceBase.create_many", "ORM bulk insert(), list of dicts"}
    if backend.name == "postgresql":
        expected.add("asyncpg COPY")
    assert set(results["variants"]) == expected
    assert results["stored_rows"] == 500 * len(expected) * 2  # one warm-up and one timed round

"""N+1 against loader options, and a page with its total in one statement against two, with the
network round trip a real deployment pays (`python -m benchmarks round-trips`).

On loopback a round trip costs ~0.05 ms and N+1 looks almost free. Each level here routes the
reference app's engine through benchmarks/latency_proxy.py, tuned until `SELECT 1` through it
costs the target round trip more than directly (the measured number is reported), and times the
variants interleaved at that level. The reference app's models (Team 1-n Hero, lazy="raise"):
  N+1           the teams, then one SELECT of heroes per team (1 + N statements); and the same
                loop with `session.refresh(team, ["heroes"])`, which is two statements per team
  selectinload  the teams, then one SELECT ... WHERE team_id IN (...) (two statements)
  joinedload    one LEFT OUTER JOIN, de-duplicated with .unique()
Two shapes: 200 teams x 50 heroes (benchmarks.scenarios' shape) and 200 teams x 5 heroes.
Many-to-one: a hero of each of the 200 teams, with its team: N+1 is session.get(Team) per hero.
Page + total: ServiceBase.page (scalar-subquery total, one statement) against the hand-written
SELECT + separate COUNT (two), a 50-row page filtered on the indexed `age = 42`.
Every unit of work also pays three fixed round trips on asyncpg: the ping at checkout
(db.py's ping_at_checkout), then BEGIN and ROLLBACK. Variants run in rotated order, with a full
gc.collect() off the clock before each loader call.
"""

import gc
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import joinedload, selectinload
from sqlmodel import col, func, select

from benchmarks.common import Timings, progress, report, save, scratch_database
from benchmarks.latency_proxy import simulated_network
from benchmarks.page_with_total import SECRET, load_rows
from examples.app.db import create_engine, create_session_factory
from examples.app.models import Hero, Team
from examples.app.services import HeroService
from examples.app.settings import Settings
from examples.servicebase.service import rel
from examples.testing import counting_statements

RTT_LEVELS_MS = (0.0, 0.3, 0.5, 1.0)  # added round trip; 0 = loopback, no proxy
Variant = Callable[[], Awaitable[Any]]


async def load_teams(engine: AsyncEngine, shapes: dict[str, tuple[int, int]]) -> dict[str, range]:
    """Teams with heroes (no age: the page filter never matches them); team ids per shape."""
    ranges: dict[str, range] = {}
    first = 1
    async with engine.begin() as connection:
        for shape, (teams, heroes) in shapes.items():
            ids = range(first, first + teams)
            ranges[shape] = ids
            first += teams
            await connection.execute(
                sa.insert(Team), [{"id": t, "name": f"team-{t}", "headquarters": "hq"} for t in ids]
            )
            rows = [
                {
                    "id": uuid.uuid4(),
                    "name": f"member-{t}-{h}",
                    "secret_name": f"member-secret-{t}-{h}",
                    "team_id": t,
                    "status": "active",
                    "attributes": {},
                    "version": 1,
                }
                for t in ids
                for h in range(heroes)
            ]
            for start in range(0, len(rows), 5000):
                await connection.execute(sa.insert(Hero), rows[start : start + 5000])
    return ranges


def with_loader(factory: Any, parents: Any, loader: Any, attribute: str) -> Variant:
    """The parents with `loader` as a query option; each returns [(parent, its attribute)]."""

    async def run() -> list[tuple[Any, Any]]:
        async with factory() as session:
            result = await session.exec(parents.options(loader))
            # unique(): a joined collection repeats its parent once per child row
            return [(parent, getattr(parent, attribute)) for parent in result.unique()]

    return run


def loading_variants(engine: AsyncEngine, ids: range) -> dict[str, Variant]:
    """Each returns [(team, its heroes)]."""
    factory = create_session_factory(engine)
    teams = select(Team).where(col(Team.id).between(ids[0], ids[-1])).order_by(col(Team.id))

    async def select_per_team() -> list[tuple[Team, Sequence[Hero]]]:
        async with factory() as session:
            loaded = (await session.exec(teams)).all()
            by_team = select(Hero).where(col(Hero.team_id) == sa.bindparam("team_id"))
            return [
                (team, (await session.exec(by_team, params={"team_id": team.id})).all())
                for team in loaded  # one query per team: the loop an agent must not write
            ]

    async def refresh_per_team() -> list[tuple[Team, Sequence[Hero]]]:
        async with factory() as session:
            loaded = (await session.exec(teams)).all()
            for team in loaded:  # two statements per team: the team's key, then its heroes
                await session.refresh(team, ["heroes"])
            return [(team, team.heroes) for team in loaded]

    return {
        "selectinload": with_loader(factory, teams, selectinload(rel(Team.heroes)), "heroes"),
        "joinedload": with_loader(factory, teams, joinedload(rel(Team.heroes)), "heroes"),
        "N+1: SELECT per team": select_per_team,
        "N+1: refresh(team, [heroes])": refresh_per_team,
    }


def many_to_one_variants(engine: AsyncEngine, ids: range) -> dict[str, Variant]:
    """200 heroes, each of another team; each returns [(hero, its team)]."""
    factory = create_session_factory(engine)
    heroes = (
        select(Hero)
        .where(col(Hero.team_id).between(ids[0], ids[-1]), col(Hero.name).endswith("-0"))
        .order_by(col(Hero.team_id))
    )

    async def get_per_hero() -> list[tuple[Hero, Team | None]]:
        async with factory() as session:
            loaded = (await session.exec(heroes)).all()
            return [(hero, await session.get(Team, hero.team_id)) for hero in loaded]

    return {
        "selectinload": with_loader(factory, heroes, selectinload(rel(Hero.team)), "team"),
        "joinedload": with_loader(factory, heroes, joinedload(rel(Hero.team)), "team"),
        "N+1: session.get(Team) per hero": get_per_hero,
    }


def page_variants(engine: AsyncEngine) -> dict[str, Variant]:
    factory = create_session_factory(engine)
    where = (col(Hero.deleted_at).is_(None), col(Hero.age) == 42)

    async def one_statement() -> tuple[list[str], int]:
        async with factory() as session:
            service = HeroService(session, cursor_secret=SECRET)
            page = await service.page({"field": "age", "op": "eq", "value": 42}, limit=50)
            return [hero.name for hero in page.items], page.total

    async def two_statements() -> tuple[list[str], int]:
        async with factory() as session:
            rows = await session.exec(
                select(Hero).where(*where).order_by(col(Hero.name), col(Hero.id)).limit(50)
            )
            items = [hero.name for hero in rows.all()]
            total = (await session.exec(select(func.count()).select_from(Hero).where(*where))).one()
            return items, total

    return {
        "ServiceBase.page (1 statement)": one_statement,
        "page + COUNT (2 statements)": two_statements,
    }


async def agree(engine: AsyncEngine, variants: dict[str, Variant], what: str) -> dict[str, int]:
    """Every variant returns the same rows (or the timing means nothing); its statement count."""
    answers, counts = {}, {}
    for name, call in variants.items():
        with counting_statements(engine) as log:
            result = await call()
        counts[name] = log.count
        if what == "teams":
            answers[name] = sorted(
                (t.id, sorted(str(h.id) for h in heroes)) for t, heroes in result
            )
        elif what == "heroes":
            answers[name] = sorted((str(hero.id), team.id) for hero, team in result)
        else:
            answers[name] = result
    expected = next(iter(answers.values()))
    if not expected or not expected[0] or any(answer != expected for answer in answers.values()):
        raise SystemExit(f"{what}: the variants returned different rows")
    return counts


async def rotated(
    variants: dict[str, Variant], repetitions: int, warmup: int = 3, *, collect: bool = False
) -> Timings:
    """Like common.interleaved, but round r starts at variant r: no variant always follows the
    same neighbour (a heavy one leaves cold caches and a busy server behind). collect: a full
    gc.collect() before each call, off the clock, so a variant pays for its own garbage only
    (10,000 ORM objects leave a collection due that the next variant would otherwise pay)."""
    names = list(variants)
    timings = Timings({name: [] for name in names})
    for _ in range(warmup):
        for call in variants.values():
            await call()
    for round_number in range(repetitions):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            if collect:
                gc.collect()
            started = time.perf_counter()
            await variants[name]()
            timings.samples[name].append(time.perf_counter() - started)
        progress(round_number + 1, repetitions)
    print()
    return timings


async def main(
    backend: str = "postgresql",
    *,
    page_rows: int = 100_000,
    repetitions: int = 20,
    levels: tuple[float, ...] = RTT_LEVELS_MS,
    shapes: dict[str, tuple[int, int]] | None = None,
    save_results: bool = True,
) -> dict[str, Any]:
    shapes = shapes or {"200 teams x 50 heroes": (200, 50), "200 teams x 5 heroes": (200, 5)}
    results: dict[str, Any] = {"backend": backend, "repetitions": repetitions, "levels": {}}
    async with scratch_database(backend) as url:
        setup = create_engine(Settings(database_url=url.render_as_string(hide_password=False)))
        try:
            print(f"loading {page_rows:,} heroes and the teams ...")
            await load_rows(setup, page_rows)
            ranges = await load_teams(setup, shapes)
            async with setup.begin() as connection:
                analyze = "ANALYZE" if backend == "postgresql" else "ANALYZE TABLE"
                await connection.exec_driver_sql(f"{analyze} hero")
                await connection.exec_driver_sql(f"{analyze} team")
        finally:
            await setup.dispose()
        for rtt in levels:
            results["levels"][f"{rtt:g} ms"] = await one_level(url, rtt, ranges, repetitions)
    if save_results:
        print(f"saved {save('round_trips', backend, results)}")
    return results


async def measure(
    engine: AsyncEngine,
    variants: dict[str, Variant],
    what: str,
    title: str,
    reps: int,
    *,
    collect: bool = False,
) -> dict[str, Any]:
    """Check the variants agree, time them rotated; ratios to the first, with statement counts."""
    counts = await agree(engine, variants, what)
    timings = await rotated(variants, reps, collect=collect)
    rows = report(title, timings, next(iter(variants)))
    for name in rows:
        rows[name]["statements"] = counts[name]
    return rows


async def one_level(url: URL, rtt: float, ranges: dict[str, range], reps: int) -> dict[str, Any]:
    async with simulated_network(url, rtt) as (route, measured):
        level: dict[str, Any] = {"select_1": measured}
        print(
            f"\n=== added round trip: target {rtt:g} ms, measured {measured['added_ms']:.3f} ms"
            f" (SELECT 1: {measured['proxied_ms']:.3f} ms, direct {measured['direct_ms']:.3f} ms)"
        )
        engine = create_engine(Settings(database_url=route.render_as_string(hide_password=False)))
        try:
            for shape, ids in ranges.items():
                variants = loading_variants(engine, ids)
                title = f"{shape}, +{rtt:g} ms"
                level[shape] = await measure(engine, variants, "teams", title, reps, collect=True)
            ids = list(ranges.values())[-1]  # the last shape's teams: a hero of each
            variants = many_to_one_variants(engine, ids)
            title = f"{len(ids)} heroes, each its team, +{rtt:g} ms"
            level["heroes, each its team"] = await measure(
                engine, variants, "heroes", title, reps, collect=True
            )
            title = f"page + total, +{rtt:g} ms"
            level["page + total"] = await measure(
                engine, page_variants(engine), "page", title, reps * 5
            )
        finally:
            await engine.dispose()
    return level

"""Shared benchmark plumbing: a database of our own, interleaved timing, a ratio table."""

import json
import os
import secrets
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

SERVER_URL_ENV = {"postgresql": "TEST_POSTGRES_URL", "mysql": "TEST_MYSQL_URL"}
RESULTS = Path(__file__).parent / "results"


def server_url(backend: str) -> URL:
    env = SERVER_URL_ENV[backend]
    raw = os.environ.get(env)
    if not raw:
        raise SystemExit(f"set {env} to a server URL (the benchmark creates its own database)")
    return make_url(raw)


async def _admin(url: URL, statement: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql(statement)
    finally:
        await engine.dispose()


@asynccontextmanager
async def scratch_database(backend: str) -> AsyncIterator[URL]:
    """A database created for this run and dropped afterwards."""
    if backend == "sqlite":
        folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"asm_bench_{secrets.token_hex(4)}"
        folder.mkdir()
        try:
            yield make_url(f"sqlite+aiosqlite:///{folder}/bench.db")
        finally:
            for child in folder.iterdir():
                child.unlink()
            folder.rmdir()
        return
    url = server_url(backend)
    name = f"asm_bench_{secrets.token_hex(4)}"
    if backend == "postgresql":
        create, drop = f'CREATE DATABASE "{name}"', f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    else:
        create = f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        drop = f"DROP DATABASE IF EXISTS `{name}`"
    await _admin(url, create)
    try:
        yield url.set(database=name)
    finally:
        await _admin(url, drop)


@dataclass
class Timings:
    samples: dict[str, list[float]] = field(default_factory=dict)

    def median_ms(self, name: str) -> float:
        return statistics.median(self.samples[name]) * 1000


async def interleaved(
    variants: Mapping[str, Callable[[], Awaitable[object]]], repetitions: int, warmup: int = 3
) -> Timings:
    """Run every variant once per round, rounds repeated: drift on a shared machine hits all."""
    timings = Timings({name: [] for name in variants})
    for _ in range(warmup):
        for call in variants.values():
            await call()
    for round_number in range(repetitions):
        for name, call in variants.items():
            started = time.perf_counter()
            await call()
            timings.samples[name].append(time.perf_counter() - started)
        progress(round_number + 1, repetitions)
    print(file=sys.stderr)
    return timings


def progress(done: int, total: int) -> None:
    width = 30
    filled = width * done // total
    sys.stderr.write(f"\r  [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    sys.stderr.flush()


def report(title: str, timings: Timings, baseline: str) -> dict[str, dict[str, float]]:
    """Print medians and ratios to the baseline; return them for the JSON file."""
    base = timings.median_ms(baseline)
    rows = {}
    print(f"\n{title}  (ratio = median / median of {baseline})")
    print(f"  {'variant':<28} {'median ms':>10} {'ratio':>7}")
    for name in timings.samples:
        median = timings.median_ms(name)
        rows[name] = {"median_ms": round(median, 3), "ratio": round(median / base, 2)}
        print(f"  {name:<28} {median:>10.3f} {median / base:>7.2f}")
    return rows


def save(scenario: str, backend: str, results: object) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{scenario}-{backend}.json"
    path.write_text(json.dumps(results, indent=2))
    return path

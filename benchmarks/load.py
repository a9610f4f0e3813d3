"""Load the reference app under uvicorn on PostgreSQL, from concurrent clients on loopback.

Reports requests/s, p50/p99 latency and errors, then stops the server with SIGTERM while requests
are in flight and checks they all finish and the server exits cleanly.
"""

import asyncio
import importlib.util
import os
import random
import re
import shutil
import signal
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import save, scratch_database
from examples.app.db import create_engine, create_session_factory
from examples.app.migrate import upgrade
from examples.app.models import Hero, Team
from examples.app.settings import Settings

ROOT = Path(__file__).parents[1]
DROPPED = "Server disconnected without sending a response"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def seed(url: str, heroes: int) -> None:
    await upgrade(url)
    engine = create_engine(Settings(database_url=url))
    async with create_session_factory(engine)() as session:
        teams = [Team(name=f"team {i}", headquarters="HQ") for i in range(20)]
        session.add_all(teams)
        session.add_all(
            Hero(name=f"hero {i}", secret_name=f"secret {i}", age=i % 90, team=teams[i % 20])
            for i in range(heroes)
        )
        await session.commit()
    await engine.dispose()


async def wait_until_healthy(client: httpx.AsyncClient, server: asyncio.subprocess.Process) -> None:
    for _ in range(100):
        if server.returncode is not None:
            raise SystemExit("the server exited during startup")
        try:
            if (await client.get("/health/ready")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("the server did not become healthy")


async def one_request(client: httpx.AsyncClient, hero_ids: list[str]) -> httpx.Response:
    roll = random.random()
    if roll < 0.6:
        age = random.randrange(80)
        # /admin/heroes: flat rows, the workload the published numbers measured
        params: dict[str, str | int] = {"age__gte": age, "sort": "age", "limit": 20}
        return await client.get("/admin/heroes", params=params)
    hero_id = random.choice(hero_ids)
    if roll < 0.8:
        return await client.get(f"/heroes/{hero_id}")
    return await client.post(f"/heroes/{hero_id}/birthday")


RequestFn = Any  # (client, hero_ids) -> Awaitable[httpx.Response]


def list_page(path: str) -> RequestFn:
    """The HTTP comparison: a 20-row offset page of heroes with its total, on every app."""

    async def request(client: httpx.AsyncClient, _hero_ids: list[str]) -> httpx.Response:
        return await client.get(path, params={"offset": random.randrange(0, 200), "limit": 20})

    return request


async def drive(
    base_url: str,
    clients: int,
    seconds: float,
    request: RequestFn = one_request,
    *,
    keepalive: bool = True,
    latencies: list[float] | None = None,
) -> dict[str, Any]:
    latencies = [] if latencies is None else latencies  # the caller's: pooled over rounds
    errors: list[str] = []
    idle = clients if keepalive else 0  # 0: a new connection per request
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=idle)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
        page = (await client.get("/heroes", params={"limit": 100})).json()
        hero_ids = [hero["id"] for hero in page.get("items", page.get("data", []))]
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    response = await request(client, hero_ids)
                    if response.status_code >= 400:
                        errors.append(f"{response.status_code} {response.text[:100]}")
                except httpx.HTTPError as error:
                    errors.append(repr(error))
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        before = len(latencies)
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    served = len(latencies) - before
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests": served,
        "requests_per_second": round(served / elapsed, 1),
        "p50_ms": round(quantiles[49] * 1000, 1),
        "p99_ms": round(quantiles[98] * 1000, 1),
        "errors": len(errors),
        # Closed by a stopping server before it read the request (no response byte): a client
        # or proxy may retry these; any other error is a failed request.
        "dropped_unread": sum(DROPPED in error for error in errors),
        "first_errors": errors[:5],
    }


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}  # wrk prints "1.23s " past 1 s


async def drive_wrk(base_url: str, path: str, clients: int, seconds: float) -> dict[str, Any]:
    """list_page's requests from wrk (C, one thread): the load generator takes a sliver of the
    CPU that httpx would take from the server on a small machine. Requests/s counts every
    response; "errors" counts non-2xx/3xx responses and socket errors."""
    script = Path(__file__).with_name("offset_page.lua")
    command = ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--latency"]
    command += ["--timeout", "30s", "-s", str(script), base_url + path]
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    output = (await process.communicate())[0].decode()
    if process.returncode:
        raise RuntimeError(f"wrk failed: {output}")

    def number(pattern: str) -> float:
        found = re.search(pattern, output)
        return float(found.group(1)) if found else 0.0

    p50, p99 = (re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M) for q in (50, 99))
    if p50 is None or p99 is None:
        raise RuntimeError(f"no latency distribution in wrk's output: {output}")
    bad = number(r"Non-2xx or 3xx responses: (\d+)")
    socket_errors = sum(map(int, re.findall(r"(?:connect|read|write|timeout) (\d+)", output)))
    return {
        "clients": clients,
        "seconds": seconds,
        "requests": int(number(r"(\d+) requests in")),
        "requests_per_second": number(r"Requests/sec:\s+([\d.]+)"),
        "p50_ms": round(float(p50[1]) * UNITS[p50[2]], 1),
        "p99_ms": round(float(p99[1]) * UNITS[p99[2]], 1),
        "errors": int(bad) + socket_errors,
        "first_errors": [line for line in output.splitlines() if "errors" in line or "2xx" in line]
        if bad or socket_errors
        else [],
    }


async def graceful_shutdown(
    base_url: str, server: asyncio.subprocess.Process, signum: int = signal.SIGTERM
) -> dict[str, Any]:
    """SIGTERM (or SIGHUP: restart) while 20 exports stream: they must all finish."""
    started = asyncio.Semaphore(0)
    finished = 0

    async def export(client: httpx.AsyncClient) -> int:
        async with client.stream("GET", "/heroes/export") as response:
            started.release()  # the server answered: this request is in flight
            async for _ in response.aiter_bytes():
                pass
            nonlocal finished
            finished += 1
            return response.status_code

    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        in_flight = [asyncio.create_task(export(client)) for _ in range(20)]
        # SIGTERM only once every request has its response started: a request the server has
        # not accepted yet is refused during shutdown, which is right but not what is measured.
        async with asyncio.timeout(30):
            for _ in in_flight:
                await started.acquire()
        streaming = len(in_flight) - finished  # still sending their bodies at SIGTERM
        server.send_signal(signum)
        statuses = await asyncio.gather(*in_flight, return_exceptions=True)
    completed = [status for status in statuses if status == 200]
    return {"in_flight": len(in_flight), "completed": len(completed), "streaming": streaming}


async def main(
    clients: int = 50, seconds: float = 20.0, heroes: int = 2000, *, save_results: bool = True
) -> dict[str, Any]:
    async with scratch_database("postgresql") as url:
        database_url = url.render_as_string(hide_password=False)
        print(f"seeding {heroes} heroes ...")
        await seed(database_url, heroes)
        server, base_url = await start_server(
            "examples.app.main:create_app", database_url, capture_log=True
        )
        try:
            print(f"{clients} clients for {seconds:.0f} s against {base_url} ...")
            results = await drive(base_url, clients, seconds)
            results["shutdown"] = await graceful_shutdown(base_url, server)
            _, stderr = await asyncio.wait_for(server.communicate(), timeout=30)
        finally:
            if server.returncode is None:
                server.kill()
                await server.wait()
        log = stderr.decode(errors="replace")
        results["shutdown"] |= {
            # uvicorn re-raises SIGTERM once it has shut down gracefully: -15 is a clean exit.
            "exit_code": server.returncode,
            "clean_log": "Traceback" not in log and "Event loop is closed" not in log,
        }
    print(
        f"  {results['requests_per_second']} requests/s, p50 {results['p50_ms']} ms, "
        f"p99 {results['p99_ms']} ms, {results['errors']} errors; shutdown: "
        f"{results['shutdown']}"
    )
    if save_results:
        print(f"saved {save('load', 'postgresql', results)}")
    return results


async def start_server(
    factory: str, database_url: str, *uvicorn_options: str, capture_log: bool = False
) -> tuple[asyncio.subprocess.Process, str]:
    """uvicorn with one worker and a pool of 10 + 10, serving the app factory on loopback."""
    port = free_port()
    environment = {**os.environ, "DATABASE_URL": database_url, "POOL_SIZE": "10"}
    environment["CURSOR_SECRET"] = "benchmark-cursor-secret-0123456789"
    environment["MAX_OVERFLOW"] = "10"
    command = [sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1"]
    command += ["--port", str(port), "--log-level", "warning", "--timeout-graceful-shutdown", "10"]
    command += uvicorn_options
    server = await asyncio.create_subprocess_exec(
        *command,
        cwd=ROOT,
        env=environment,
        stderr=asyncio.subprocess.PIPE if capture_log else asyncio.subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base_url) as probe:
        await wait_until_healthy(probe, server)
    return server, base_url


async def compare_http(
    clients: int = 50,
    seconds: float = 20.0,
    heroes: int = 2000,
    *,
    rounds: int = 5,
    save_results: bool = True,
) -> dict[str, Any]:
    """The reference app's list endpoints vs FastCRUD's generated one: same table, same server.

    reference app: GET /heroes (page_rows into HeroDetail: each hero's team and powers too) and
    /admin/heroes (ServiceBase.page, ORM objects, 76 generated query parameters); its /bench/
    variants (benchmarks/http_variants.py) change one choice of GET /heroes each, and so does
    serving it on uvloop + httptools; FastCRUD: HeroPublic rows, 2 statements. The servers run at
    once and each endpoint is driven in turn, `rounds` times `seconds / rounds` each: a
    neighbour's load falls on every one alike.
    """
    results: dict[str, Any] = {"clients": clients, "seconds": seconds}
    # each app: (the uvicorn command: factory and options, the path)
    # Pinned: with uvloop and httptools installed uvicorn's "auto" would pick them.
    plain = ("--loop", "asyncio", "--http", "h11")
    reference = ("benchmarks.http_variants:create_app", *plain)
    # uvicorn[standard]'s event loop and HTTP parser, when installed (pip install uvloop httptools)
    fast_server = (reference[0], "--loop", "uvloop", "--http", "httptools")
    apps: dict[str, tuple[tuple[str, ...], str]] = {
        "reference app": (reference, "/heroes"),
        "reference app, ORM objects": (reference, "/bench/heroes-orm"),
        "reference app, def dependencies": (reference, "/bench/heroes-sync-deps"),
        "reference app, AUTOCOMMIT": (reference, "/bench/heroes-autocommit"),
        "reference app, flat HeroPublic": (reference, "/bench/heroes-flat"),
        "reference app /admin/heroes": (reference, "/admin/heroes"),
        "FastCRUD crud_router": (("benchmarks.fastcrud_app:create_app", *plain), "/heroes"),
    }
    if importlib.util.find_spec("uvloop") and importlib.util.find_spec("httptools"):
        apps["reference app, uvloop + httptools"] = (fast_server, "/heroes")
    async with scratch_database("postgresql") as url:
        database_url = url.render_as_string(hide_password=False)
        await seed(database_url, heroes)
        commands = {command for command, _ in apps.values()}
        running = {
            command: await start_server(command[0], database_url, *command[1:])
            for command in commands
        }
        servers = {name: running[command] for name, (command, _) in apps.items()}
        try:
            results |= await alternate(servers, apps, clients, seconds, rounds)
        finally:
            for server, _ in running.values():
                server.terminate()
                await server.wait()
    theirs = results["FastCRUD crud_router"]
    print(f"\nGET ?offset&limit=20, {clients} clients, {seconds:.0f} s each in {rounds} rounds")
    for name, (_, path) in apps.items():
        row = results[name]
        print(
            f"  {name:<32} {path:<24} {row['requests_per_second']:>8} req/s  "
            f"p99 {row['p99_ms']} ms  {row['errors']} errors"
        )
    for name in apps:
        ours = results[name]
        if ours is theirs:
            continue
        ratio = round(ours["requests_per_second"] / theirs["requests_per_second"], 2)
        p99 = round(ours["p99_ms"] / theirs["p99_ms"], 2) if theirs["p99_ms"] else None
        results[f"{name} / FastCRUD"] = {"requests_per_second": ratio, "p99": p99}
        print(f"  {name} / FastCRUD: requests/s {ratio}, p99 {p99}")
    results["throughput_ratio"] = results["reference app / FastCRUD"]["requests_per_second"]
    if save_results:
        print(f"saved {save('http', 'postgresql', results)}")
    return results


async def alternate(
    servers: dict[str, tuple[asyncio.subprocess.Process, str]],
    apps: dict[str, tuple[Any, str]],
    clients: int,
    seconds: float,
    rounds: int,
) -> dict[str, Any]:
    """Each app in turn, round after round: requests/s over all its rounds; latency quantiles
    over all its requests (httpx) or the median of its rounds' (wrk, when installed)."""
    use_wrk = shutil.which("wrk") is not None
    latencies: dict[str, list[float]] = {name: [] for name in apps}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in apps}
    for _ in range(rounds):
        for name, (_, path) in apps.items():
            _, base_url = servers[name]
            if use_wrk:
                run = await drive_wrk(base_url, path, clients, seconds / rounds)
            else:
                run = await drive(
                    base_url, clients, seconds / rounds, list_page(path), latencies=latencies[name]
                )
            runs[name].append(run)
    results: dict[str, Any] = {"load generator": "wrk" if use_wrk else "httpx"}
    for name in apps:
        served = sum(run["requests"] for run in runs[name])
        # requests / (requests/s): the time each round drove, unrounded
        elapsed = sum(
            run["requests"] / run["requests_per_second"] for run in runs[name] if run["requests"]
        )
        if use_wrk:
            p50 = statistics.median(run["p50_ms"] for run in runs[name])
            p99 = statistics.median(run["p99_ms"] for run in runs[name])
        else:
            pooled = latencies[name]
            quantiles = statistics.quantiles(pooled, n=100) if len(pooled) > 1 else [0.0] * 99
            p50, p99 = round(quantiles[49] * 1000, 1), round(quantiles[98] * 1000, 1)
        errors = [error for run in runs[name] for error in run["first_errors"]]
        results[name] = {
            "requests": served,
            "requests_per_second": round(served / elapsed, 1) if elapsed else 0.0,
            "p50_ms": p50,
            "p99_ms": p99,
            "errors": sum(run["errors"] for run in runs[name]),
            "first_errors": errors[:5],
        }
    return results

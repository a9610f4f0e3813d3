"""A TCP proxy that adds network latency, so round trips cost what they cost between machines.

On loopback a round trip to PostgreSQL is ~0.05 ms and N+1 looks almost free. The proxy forwards
every chunk it reads, in order, after a fixed one-way delay (0.25 ms each way ~ a 0.5 ms round
trip, a same-datacenter hop). No root, no netem: it is a child process the benchmark starts and
stops itself (`async with LatencyProxy(host, port, one_way_ms) as proxy:`), so the benchmark's
own CPU work never holds up forwarding, and it runs on a select() event loop because epoll
rounds every timer up to a whole millisecond. What a round trip really costs through it is
measured, not assumed: `added_rtt_ms()` times `SELECT 1` through the proxy and directly.

Run alone: `python -m benchmarks.latency_proxy --target 127.0.0.1:5432 --one-way-ms 0.25`
(prints the port it listens on).
"""

import argparse
import asyncio
import collections
import selectors
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Self

from sqlalchemy.engine import URL

# ---------------------------------------------------------------- the proxy (child process)


class _Pipe(asyncio.Protocol):
    """One direction's receiving end: data read here is written to `peer` `delay` s later."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.transport: asyncio.Transport | None = None
        self.peer: _Pipe | None = None
        self.pending: collections.deque[tuple[float, bytes]] = collections.deque()
        self.timer: asyncio.TimerHandle | None = None
        self.eof = False
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        # MySQL speaks first: its greeting may wait here for the client's side to be ready.
        if self.peer is not None and self.peer.pending and self.peer.timer is None:
            self.peer._forward()

    def data_received(self, data: bytes) -> None:
        # One timer per direction and a FIFO: chunks leave in the order they came.
        self.pending.append((self.loop.time() + self.delay, data))
        if self.timer is None:
            self._forward()

    def _forward(self) -> None:
        self.timer = None
        now = self.loop.time() + 20e-6  # the loop may wake a hair early: close enough
        if self.peer is None or self.peer.transport is None:
            return  # the far side isn't connected yet: its connection_made calls us again
        while self.pending and self.pending[0][0] <= now:
            self.peer.transport.write(self.pending.popleft()[1])
        if self.pending:
            self.timer = self.loop.call_at(self.pending[0][0], self._forward)
        elif self.eof:
            self._close_peer()

    def eof_received(self) -> bool:
        self.eof = True
        if not self.pending:
            self._close_peer()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        if not self.pending:
            self._close_peer()

    def _close_peer(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    # Flow control: when the far side can't keep up, stop reading this side.
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


async def serve(target_host: str, target_port: int, one_way: float, port: int = 0) -> None:
    loop = asyncio.get_running_loop()

    async def accept(client_sock: socket.socket) -> None:
        client = _Pipe(one_way)
        server = _Pipe(one_way)
        client.peer, server.peer = server, client
        client_sock.setblocking(False)
        # asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP; an accepted one
        # has 0. With Nagle on, a reply written in two pieces waits for the client's delayed
        # ACK: 40 ms stalls.
        client_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await loop.create_connection(lambda: server, target_host, target_port)
        except OSError:
            client_sock.close()
            return
        await loop.connect_accepted_socket(lambda: client, client_sock)

    listener = socket.create_server(("127.0.0.1", port))
    listener.setblocking(False)
    print(listener.getsockname()[1], flush=True)  # the parent reads the port from here
    tasks: set[asyncio.Task[None]] = set()
    while True:
        sock, _ = await loop.sock_accept(listener)
        task = asyncio.create_task(accept(sock))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


def _tight_timers() -> None:
    """Linux wakes a sleeping thread up to 50 us late by default (timer slack): ask for 1 us."""
    if sys.platform == "linux":
        import ctypes

        pr_set_timerslack = 29
        ctypes.CDLL(None).prctl(pr_set_timerslack, 1000, 0, 0, 0)


def run(target_host: str, target_port: int, one_way_ms: float, port: int = 0) -> None:
    _tight_timers()
    # select() takes a timeout in microseconds; epoll (asyncio's default) rounds up to 1 ms.
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    try:
        loop.run_until_complete(serve(target_host, target_port, one_way_ms / 1000, port))
    except KeyboardInterrupt:
        pass
    finally:
        loop.close()


# ---------------------------------------------------------------- the parent's handle


class LatencyProxy:
    """Starts the proxy as a child process for the `async with` block; `url(u)` routes u via it."""

    def __init__(self, target_host: str, target_port: int, one_way_ms: float) -> None:
        self.target_host, self.target_port, self.one_way_ms = target_host, target_port, one_way_ms
        self.port = 0
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Self:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.latency_proxy",
            "--target",
            f"{self.target_host}:{self.target_port}",
            "--one-way-ms",
            str(self.one_way_ms),
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout=30)
        if not line.strip().isdigit():
            await self.__aexit__(None, None, None)
            raise RuntimeError("the latency proxy did not start")
        self.port = int(line)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()  # our own child, by its pid
            try:
                await asyncio.wait_for(self.process.wait(), timeout=10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self.process = None

    def url(self, url: URL) -> URL:
        return url.set(host="127.0.0.1", port=self.port)


def proxy_for(url: URL, one_way_ms: float) -> LatencyProxy:
    default_port = 5432 if url.get_backend_name() == "postgresql" else 3306
    return LatencyProxy(url.host or "127.0.0.1", url.port or default_port, one_way_ms)


# ---------------------------------------------------------------- measuring what it adds


async def _select_one_timer(
    url: URL,
) -> tuple[Callable[[], Awaitable[object]], Callable[[], Awaitable[None]]]:
    """A raw driver connection: (one SELECT 1 round trip, close)."""
    if url.get_backend_name() == "postgresql":
        import asyncpg  # type: ignore[import-untyped]

        pg = await asyncpg.connect(
            url.set(drivername="postgresql").render_as_string(hide_password=False)
        )

        async def pg_round_trip() -> object:
            return await pg.fetchval("SELECT 1")

        return pg_round_trip, pg.close

    import aiomysql  # type: ignore[import-untyped]

    my = await aiomysql.connect(
        host=url.host,
        port=url.port or 3306,
        user=url.username,
        password=url.password or "",
        db=url.database,
    )

    async def my_round_trip() -> object:
        async with my.cursor() as cursor:
            await cursor.execute("SELECT 1")
            return await cursor.fetchall()

    async def my_close() -> None:
        my.close()

    return my_round_trip, my_close


async def round_trip_ms(url: URL, samples: int = 200) -> float:
    """Median `SELECT 1` round trip on an open raw connection, in ms."""
    call, close = await _select_one_timer(url)
    try:
        for _ in range(10):
            await call()
        times = []
        for _ in range(samples):
            started = time.perf_counter()
            await call()
            times.append(time.perf_counter() - started)
        return statistics.median(times) * 1000
    finally:
        await close()


async def added_rtt_ms(direct: URL, proxy: LatencyProxy, samples: int = 200) -> dict[str, float]:
    """SELECT 1 through the proxy and directly, interleaved in blocks: what the proxy adds."""
    direct_ms, proxied_ms = [], []
    for _ in range(4):
        direct_ms.append(await round_trip_ms(direct, samples // 4))
        proxied_ms.append(await round_trip_ms(proxy.url(direct), samples // 4))
    d, p = statistics.median(direct_ms), statistics.median(proxied_ms)
    return {"direct_ms": round(d, 3), "proxied_ms": round(p, 3), "added_ms": round(p - d, 3)}


@asynccontextmanager
async def simulated_network(url: URL, rtt_ms: float) -> AsyncIterator[tuple[URL, dict[str, float]]]:
    """(url to connect to, measured round trip) for a target added round trip in ms.

    0 is the direct loopback connection. Otherwise the proxy's one-way delay is tuned (at most
    three starts) until SELECT 1 through it takes rtt_ms longer than directly: the proxy's own
    forwarding and the kernel's timer wake-ups add ~0.1 ms per hop on top of the delay.
    """
    if rtt_ms <= 0:
        direct = await round_trip_ms(url)
        yield url, {"direct_ms": round(direct, 3), "proxied_ms": round(direct, 3), "added_ms": 0.0}
        return
    one_way = rtt_ms / 2
    for attempt in range(3):
        async with proxy_for(url, one_way) as proxy:
            measured = await added_rtt_ms(url, proxy)
            error = measured["added_ms"] - rtt_ms
            if abs(error) <= 0.05 * rtt_ms + 0.02 or attempt == 2:
                yield proxy.url(url), {**measured, "one_way_delay_ms": round(one_way, 3)}
                return
        one_way = max(0.0, one_way - error / 2)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.latency_proxy")
    parser.add_argument("--target", required=True, help="host:port to forward to")
    parser.add_argument("--one-way-ms", type=float, default=0.25)
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free)")
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    run(host, int(port), args.one_way_ms, args.port)


if __name__ == "__main__":
    main()

"""ASGI middleware for the reference app."""

import asyncio
import contextlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send


# --8<-- [start:cancel_on_disconnect]
class CancelOnDisconnect:
    """Cancel a request's handler when its client disconnects before the response is complete.

    uvicorn doesn't: a query keeps running, and commits, for a client that gave up. Cancelled,
    asyncpg asks PostgreSQL to cancel the statement and the unit rolls back (MariaDB runs the
    statement to its end). Not once the handler called finish_even_if_disconnected (the session
    dependency does, before COMMIT): a cancelled COMMIT may land or not, and nobody would know.
    """

    def __init__(self, app: ASGIApp, read_ahead: int = 1 << 20) -> None:
        self.app = app
        self.read_ahead = read_ahead  # request body bytes buffered ahead of the app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = asyncio.current_task()
        if scope["type"] != "http" or handler is None:
            await self.app(scope, receive, send)
            return
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        buffered = 0
        cancellable, started, cancelled = True, False, False

        def finish() -> None:
            nonlocal cancellable
            cancellable = False

        scope[FINISH] = finish

        async def watch() -> None:  # the only reader of `receive`
            nonlocal buffered, cancelled
            while True:
                message = await receive()
                inbox.put_nowait(message)
                if message["type"] == "http.disconnect":
                    if cancellable:
                        cancelled = True
                        handler.cancel()
                    return
                buffered += len(message.get("body", b""))
                # Read on while the app doesn't take the body (an endpoint that ignores it):
                # the disconnect comes after it. Bounded: past read_ahead, wait for the app.
                if message.get("more_body") and buffered > self.read_ahead:
                    await inbox.join()

        async def receive_from_inbox() -> Message:
            nonlocal buffered
            if watcher.done() and inbox.empty():
                return {"type": "http.disconnect"}
            message = await inbox.get()
            inbox.task_done()
            buffered -= len(message.get("body", b""))
            return message

        async def send_and_track(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            if message["type"] == "http.response.body" and not message.get("more_body"):
                finish()  # a disconnect from now on is the normal end
            await send(message)

        watcher = asyncio.create_task(watch())
        try:
            await self.app(scope, receive_from_inbox, send_and_track)
        except asyncio.CancelledError:
            # Ours: nobody is left to answer. Cancelled from elsewhere too (shutdown): re-raise.
            if not cancelled or handler.uncancel() > 0:
                raise
            # End the response (the server drops it): middleware outside this one, such as an
            # @app.middleware("http"), would fail with "No response returned." otherwise.
            with contextlib.suppress(OSError):
                if not started:
                    await send({"type": "http.response.start", "status": 499, "headers": []})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()


FINISH = "cancel_on_disconnect.finish"


def finish_even_if_disconnected(scope: Scope) -> None:
    """From here on a disconnect doesn't cancel this request. Call it before COMMIT."""
    if FINISH in scope:
        scope[FINISH]()


# --8<-- [end:cancel_on_disconnect]

"""ASGI middleware for the reference app."""

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send


# --8<-- [start:cancel_on_disconnect]
class CancelOnDisconnect:
    """Cancel a request's handler when its client disconnects before the response is complete.

    uvicorn doesn't: a query keeps running, and commits, for a client that gave up. Cancelled,
    asyncpg asks PostgreSQL to cancel the statement and the unit rolls back (MariaDB runs the
    statement to its end). Pure ASGI, so the handler runs in this task and the cancel reaches it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = asyncio.current_task()
        if scope["type"] != "http" or handler is None:
            await self.app(scope, receive, send)
            return
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        responded = cancelled = False

        async def watch() -> None:  # the only reader of `receive`
            nonlocal cancelled
            while True:
                message = await receive()
                inbox.put_nowait(message)
                if message["type"] == "http.disconnect":
                    if not responded:
                        cancelled = True
                        handler.cancel()
                    return
                if message.get("more_body"):
                    await inbox.join()  # backpressure: read on when the app took the chunk

        async def receive_from_inbox() -> Message:
            if watcher.done() and inbox.empty():
                return {"type": "http.disconnect"}
            message = await inbox.get()
            inbox.task_done()
            return message

        async def send_and_track(message: Message) -> None:
            nonlocal responded
            if message["type"] == "http.response.body" and not message.get("more_body"):
                responded = True  # a disconnect from now on is the normal end
            await send(message)

        watcher = asyncio.create_task(watch())
        try:
            await self.app(scope, receive_from_inbox, send_and_track)
        except asyncio.CancelledError:
            # Ours: nobody is left to answer. Cancelled from elsewhere too (shutdown): re-raise.
            if not cancelled or handler.uncancel() > 0:
                raise
        finally:
            watcher.cancel()


# --8<-- [end:cancel_on_disconnect]

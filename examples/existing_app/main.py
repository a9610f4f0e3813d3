"""The notes app: `DATABASE_URL=... uvicorn examples.existing_app.main:app`."""

from fastapi import FastAPI

from examples.existing_app.api import router
from examples.existing_app.db import lifespan

app = FastAPI(title="notes (an existing app)", lifespan=lifespan)
app.include_router(router)

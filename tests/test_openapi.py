"""The public HTTP contract: an OpenAPI snapshot, and Schemathesis against the live app."""

import json
import os
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import delete

from examples.app.db import create_session_factory
from examples.app.main import create_app
from examples.app.models import Hero, HeroPower, Power, Team
from examples.app.settings import Settings
from examples.servicebase.transactions import unit_of_work
from tests.conftest import Backend

SNAPSHOT = Path(__file__).parent / "openapi.json"


def test_openapi_contract_is_unchanged() -> None:
    """Fails when the public contract changes. If the change is intended:
    UPDATE_OPENAPI_SNAPSHOT=1 python -m pytest tests/test_openapi.py, and review the diff."""
    current = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:")).openapi()
    if os.environ.get("UPDATE_OPENAPI_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert current == json.loads(SNAPSHOT.read_text())


def test_list_filters_are_documented() -> None:
    spec = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:")).openapi()
    names = {p["name"] for p in spec["paths"]["/admin/heroes"]["get"]["parameters"]}
    assert {"age__gte", "name__icontains", "team.name__eq", "sort", "limit", "offset"} <= names
    assert "secret_name__eq" not in names
    names = {p["name"] for p in spec["paths"]["/heroes"]["get"]["parameters"]}
    assert names == {"name_contains", "age_gte", "age_lte", "status", "team", "power", "sort",
                     "limit", "offset"}  # fmt: skip


@pytest.mark.backends("sqlite", "postgresql")
async def test_no_server_errors_and_responses_match_the_schema(
    backend: Backend, engine: AsyncEngine
) -> None:
    """Schemathesis generates requests from the OpenAPI schema for every operation and checks
    each response: no 5xx, documented status codes, content types and headers, bodies that
    match their schema, invalid requests rejected."""
    app = create_app(backend.settings())
    api = schemathesis.openapi.from_asgi("/openapi.json", app)
    try:
        run_every_operation(api)
    finally:  # the app committed what Schemathesis sent: leave the tables empty for others
        await empty_tables(engine)


def run_every_operation(api: Any) -> None:
    for result in api.get_all_operations():
        operation = result.ok()  # an invalid schema raises here

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            # Not checked: that every schema-valid request succeeds. Some rules can't be said in
            # OpenAPI (between's low <= high, a sort key twice, what the JSON `filter` holds),
            # and those requests get a 422 with a JSON body, which the other checks validate.
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        check()


async def empty_tables(engine: AsyncEngine) -> None:
    async with unit_of_work(create_session_factory(engine)) as session:
        for model in (HeroPower, Hero, Power, Team):
            await session.exec(delete(model))


EXAMPLES_PER_OPERATION = 25

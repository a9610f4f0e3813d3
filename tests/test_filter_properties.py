"""Property test: the filter compiler agrees with a plain-Python evaluation of the same filter.

Hypothesis generates heroes and filter trees; the service runs them on the database (page()
and page_rows, whose statements are kept per filter shape with the values bound) and the
evaluator below runs them over the same rows with SQL's three-valued logic. Same ids, every
backend. String range operators (gt/lt/between on names) are left out: their order depends on
the database collation. Names have no spaces: MySQL ignores trailing spaces in = (pinned in
test_servicebase.py).
"""

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app.models import HeroStatus
from examples.app.schemas import HeroCreate, HeroPublic
from examples.app.services import HeroService
from examples.servicebase.filters import And, Condition, Node, Not, Or
from examples.servicebase.row_pages import page_rows
from tests.test_servicebase import SECRET

ALPHABET = "aAbBéÉ%_/\\"  # LIKE's wildcards, its escape character (/) and backslash
names = st.text(ALPHABET, min_size=1, max_size=4)
ages = st.one_of(st.none(), st.integers(0, 5))
statuses = st.sampled_from([status.value for status in HeroStatus])

heroes = st.lists(st.tuples(names, ages, statuses), max_size=10)
TEXT_OPERATORS = ("contains", "icontains", "startswith", "istartswith", "endswith", "iendswith")


def leaf() -> st.SearchStrategy[dict[str, Any]]:
    def condition(field: str, op: str, value: st.SearchStrategy[Any]) -> Any:
        return value.map(lambda v: {"field": field, "op": op, "value": v})

    age_value = st.integers(0, 5)
    return st.one_of(
        *(condition("age", op, age_value) for op in ("eq", "ne", "gt", "gte", "lt", "lte")),
        *(condition("age", op, st.lists(age_value, max_size=3)) for op in ("in", "not_in")),
        condition("age", "between", st.tuples(age_value, age_value).map(sorted)),
        condition("age", "isnull", st.booleans()),
        *(condition("name", op, names) for op in ("eq", "ne")),
        *(condition("name", op, st.lists(names, max_size=3)) for op in ("in", "not_in")),
        *(condition("name", op, names) for op in TEXT_OPERATORS),
        condition("status", "eq", statuses),
        condition("status", "not_in", st.lists(statuses, max_size=2)),
    )


filters = st.recursive(
    leaf(),
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda items: {"and": items}),
        st.lists(children, min_size=1, max_size=3).map(lambda items: {"or": items}),
        children.map(lambda item: {"not": item}),
    ),
    max_leaves=6,
)


def evaluate(node: Node, row: dict[str, Any]) -> bool | None:
    """SQL semantics in Python: None is UNKNOWN; a row matches only when the result is True."""
    if isinstance(node, And):
        results = [evaluate(item, row) for item in node.items]
        return False if False in results else (None if None in results else True)
    if isinstance(node, Or):
        results = [evaluate(item, row) for item in node.items]
        return True if True in results else (None if None in results else False)
    if isinstance(node, Not):
        result = evaluate(node.item, row)
        return None if result is None else not result
    return evaluate_condition(node, row[node.field])


def evaluate_condition(condition: Condition, value: Any) -> bool | None:
    op, target = condition.op, condition.value
    if op == "isnull":
        return bool((value is None) == target)
    if op in ("in", "not_in") and not target:  # compiled to FALSE / TRUE, NULL or not
        return op == "not_in"
    if value is None:
        return None
    if op in ("icontains", "istartswith", "iendswith"):
        value, target, op = value.lower(), target.lower(), op[1:]
    checks: dict[str, Callable[[], Any]] = {
        "eq": lambda: value == target,
        "ne": lambda: value != target,
        "gt": lambda: value > target,
        "gte": lambda: value >= target,
        "lt": lambda: value < target,
        "lte": lambda: value <= target,
        "in": lambda: value in target,
        "not_in": lambda: value not in target,
        "between": lambda: target[0] <= value <= target[1],
        "contains": lambda: target in value,
        "startswith": lambda: value.startswith(target),
        "endswith": lambda: value.endswith(target),
    }
    return bool(checks[op]())


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=heroes, raw_filter=filters)
async def test_service_filters_match_python_evaluation(
    session: AsyncSession, rows: list[tuple[str, int | None, str]], raw_filter: dict[str, Any]
) -> None:
    service = HeroService(session, cursor_secret=SECRET)
    node = service.filters.parse(raw_filter)
    assert node is not None
    savepoint = await session.begin_nested()  # each example starts from an empty table
    try:
        created = await service.create_many(
            [
                HeroCreate.model_validate(
                    {"name": name, "age": age, "status": status, "secret_name": f"s{i}"}
                )
                for i, (name, age, status) in enumerate(rows)
            ]
        )
        page = await service.page(raw_filter, limit=100)
        expected = {
            hero.id
            for hero in created
            if evaluate(node, {"name": hero.name, "age": hero.age, "status": hero.status.value})
            is True
        }
        assert {hero.id for hero in page.items} == expected
        assert page.total == len(expected)
        # page_rows binds the values into a statement kept per filter shape: same answer.
        row_page = await page_rows(service, HeroPublic, raw_filter, limit=100)
        assert [item.id for item in row_page.items] == [hero.id for hero in page.items]
        assert row_page.total == page.total
    finally:
        await savepoint.rollback()

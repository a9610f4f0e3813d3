"""Hostile input on every endpoint of the reference app, on every backend.

Schemathesis (test_openapi.py) only sends what the OpenAPI schema allows. This walks the edges of
each type the schema names (numbers, datetimes, strings, UUIDs, enums, JSON documents), whole
bodies (not JSON, wrong content types, duplicate keys, deep nesting, large), headers and query
parameters (filters, sorts, cursors, page sizes), over every operation in the app's OpenAPI: a new
endpoint is covered automatically, and one this file can't fill (an unknown path parameter or
request body) fails here.

Every response must be: never a 5xx (nor an exception out of the app); a refusal is a 4xx with a
JSON body naming the problem; a refused write changes no row in any table; an accepted write
reads back as sent.
"""

import itertools
import json
import re
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any

import pytest
from httpx import AsyncClient, Response
from pydantic import Field, TypeAdapter, ValidationError
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from examples.app import models, schemas
from examples.app.main import create_app
from examples.app.settings import Settings
from examples.app.types import JSON_MAX_BYTES, JSON_MAX_DEPTH
from examples.servicebase.errors import InvalidPrecondition, PreconditionRequired
from examples.servicebase.versioning import if_match_versions
from tests.conftest import Backend, LiveAppFactory
from tests.support import raw_rows

SPEC: dict[str, Any] = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:")).openapi()
OPERATIONS = sorted(
    (path, method.upper()) for path, item in SPEC["paths"].items() for method in item
)
# Endpoints on the app's own engine, not the request session: they run against the live app (the
# test session's open transaction holds SQLite's write lock).
OWN_ENGINE = {"/health/live", "/health/ready"}
WRITES = {"POST", "PUT", "PATCH", "DELETE"}
JSON = {"content-type": "application/json"}
LEAKS = ("SELECT", "INSERT", "UPDATE", "sqlalchemy", "asyncpg", "pymysql", "sqlite3", "Traceback")


class Raw(str):
    """JSON text sent verbatim: what json.dumps can't produce (1e400, 10,000 levels)."""


def dump(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{dump(k)}:{dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v) for v in value) + "]"
    if isinstance(value, str) and any("\ud800" <= c <= "\udfff" for c in value):
        return json.dumps(value)  # a lone surrogate as the JSON escape \ud800
    return json.dumps(value, ensure_ascii=False)  # NaN and Infinity as Python's json writes them


def nested(depth: int, leaf: Any = 1) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


def deep_raw(depth: int) -> Raw:
    return Raw("[" * depth + "]" * depth)


SURROGATE = "\ud800"
NON_FINITE = [float("nan"), float("inf"), float("-inf"), Raw("1e400"), Raw("-1e400")]

# ---------------------------------------------------------------- values per schema type


def integers(schema: dict[str, Any]) -> list[Any]:
    low, high = int(schema.get("minimum", -(2**31))), int(schema.get("maximum", 2**31 - 1))
    return [
        *{low, high, low - 1, high + 1}, 2**31, -(2**31) - 1, 2**63, 2**64, -(2**63) - 1,
        1.0, 1.5, -0.0, 1e308, 5e-324, True, "1", "", "1e3", "0x10", "\u0661", *NON_FINITE,
        None, [], {},
    ]  # fmt: skip


def strings(schema: dict[str, Any]) -> list[Any]:
    n = int(schema.get("maxLength", 100))
    return [
        "", " \t\n", "\x00", "a\x00b", SURROGATE, "\udfff\ud800", "x" * n, "x" * (n + 1),
        "😀" * n, "😀" * (n + 1), "e\u0301" * (n // 2), "\u202eabc\u202c\u200b\ufeff\uffff", "%_\\",
        "' OR 1=1 --", "x" * 100_000, "\u0130i\u0131Iß", 123, True, None, [], {},
    ]  # fmt: skip


def uuids(_schema: dict[str, Any]) -> list[Any]:
    return [
        "", "not-a-uuid", "00000000-0000-0000-0000-000000000000", "0" * 32, "{" + "0" * 32 + "}",
        "urn:uuid:00000000-0000-0000-0000-000000000000", "00000000-0000-0000-0000-0000000000000",
        "g0000000-0000-0000-0000-000000000000", "\x00", SURROGATE, "😀", 123, None, [], {},
    ]  # fmt: skip


def datetimes(_schema: dict[str, Any]) -> list[Any]:
    return [
        "2024-01-01T00:00:00Z", "2024-01-01T00:00:00+14:00", "2024-01-01T00:00:00-12:00",
        "0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-12:00",
        "9999-12-31T23:59:59.999999Z", "0000-01-01T00:00:00Z", "10000-01-01T00:00:00Z",
        "2016-12-31T23:59:60Z", "2024-01-01T00:00:00", "2024-02-30T00:00:00Z",
        "2024-01-01T00:00:00+24:00", "2024-01-01T00:00:00+14:01", "2024-01-01", "1700000000",
        "1e10", "garbage", "", "\x00", 1700000000, 1e300, True, None, [],
    ]  # fmt: skip


def booleans(_schema: dict[str, Any]) -> list[Any]:
    return [True, False, 0, 1, 2, -1, "true", "True", "yes", "on", "0", "", "null", None, [], 1.5]


def enums(schema: dict[str, Any]) -> list[Any]:
    first = schema["enum"][0]
    return [*schema["enum"], first.upper(), f" {first}", "", "\x00", SURROGATE, 0, None, [], {}]


def json_documents(_schema: dict[str, Any]) -> list[Any]:
    def ok(depth: int) -> Any:  # depth containers, the document itself being the first
        return {"x": nested(depth - 2)} if depth > 1 else {}

    return [
        *({"x": value} for value in NON_FINITE),
        {"a": {"b": [1, {"c": float("nan")}]}},
        {"x": [1.5, float("inf")]},
        {"x": -0.0, "y": 1e308, "z": 5e-324, "w": 2**64, "v": -(2**63) - 1, "u": 10**300},
        {"x": 2**53 + 1, "y": 1e-7, "z": 123456789.123456789},
        {"\x00": 1}, {"x": "\x00"}, {SURROGATE: 1}, {"x": [SURROGATE]}, {"": ""},
        {"k" * 10_000: "v"}, {"x": "😀e\u0301\u202e"}, {"x": None, "y": True, "z": False},
        ok(JSON_MAX_DEPTH), ok(JSON_MAX_DEPTH + 1), {"x": nested(300)},
        {"x": Raw(deep_raw(900))}, {"x": Raw(deep_raw(10_000))},
        {"x": list(range(10_000))}, {"x": "a" * JSON_MAX_BYTES},
        {"x": Raw(json.dumps("a" * 17_000_000))},  # over MariaDB's max_allowed_packet (16 MiB)
        [], "x", 1, None,
    ]  # fmt: skip


def values_for(schema: dict[str, Any]) -> list[Any]:
    """Hostile values for one (non-null) schema, or none when its type is unknown here."""
    kind = schema.get("type")
    if "enum" in schema:
        return enums(schema)
    if kind == "integer" or kind == "number":
        return integers(schema)
    if kind == "boolean":
        return booleans(schema)
    if kind == "object":
        return json_documents(schema)
    if kind == "string":
        if schema.get("format") == "uuid":
            return uuids(schema)
        return datetimes(schema) if schema.get("format") == "date-time" else strings(schema)
    raise LookupError(f"no hostile values for schema {schema}")


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    """The non-null alternative of `X | None`, with $ref followed."""
    options = [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]
    (chosen,) = options
    assert isinstance(chosen, dict)
    if "$ref" in chosen:
        return resolve(SPEC["components"]["schemas"][chosen["$ref"].rsplit("/", 1)[1]])
    return chosen


# ---------------------------------------------------------------- the rows to aim at


@dataclass
class World:
    team_id: int
    hero_id: str
    power_id: int
    serial: list[int] = field(default_factory=lambda: [0])

    def unique(self) -> int:
        self.serial[0] += 1
        return self.serial[0]

    def path_value(self, name: str) -> Any:
        values = {"hero_id": self.hero_id, "team_id": self.team_id, "power_id": self.power_id}
        if name not in values:
            pytest.fail(f"no value for path parameter {name!r}: add it to World.path_value")
        return values[name]

    def body(self, schema_name: str) -> dict[str, Any]:
        n = self.unique()
        bodies: dict[str, dict[str, Any]] = {
            "HeroCreate": {"name": f"hostile {n}", "secret_name": f"secret {n}"},
            "HeroUpdate": {"age": n % 10_000},
            "TeamCreate": {"name": f"team {n}", "headquarters": "HQ"},
            "TeamUpdate": {"headquarters": f"HQ {n}"},
            "PowerCreate": {"name": f"power {n}"},
            "HeroPowerGrant": {"level": 5},
        }
        if schema_name not in bodies:
            pytest.fail(f"no valid {schema_name} body: add one to World.body")
        return bodies[schema_name]


WORLDS = itertools.count()


async def make_world(client: AsyncClient) -> World:
    n = next(WORLDS)
    team = (await client.post("/teams", json={"name": f"world {n}", "headquarters": "HQ"})).json()
    hero = await client.post(
        "/heroes", json={"name": f"world {n}", "secret_name": f"w{n}", "team_id": team["id"]}
    )
    power = (await client.post("/powers", json={"name": f"world {n}"})).json()
    hero_id = hero.json()["id"]
    await client.put(f"/heroes/{hero_id}/powers/{power['id']}", json={"level": 3})
    await client.post("/heroes", json={"name": f"apprentice {n}", "secret_name": f"a{n}",
                                       "mentor_id": hero_id})  # fmt: skip
    world = World(team["id"], hero_id, power["id"])
    world.serial[0] = 1000 * (n + 1)
    return world


# ---------------------------------------------------------------- requests


@dataclass
class Case:
    label: str
    path_values: dict[str, Any] = field(default_factory=dict)
    query: list[tuple[str, Any]] | str | None = None  # a str is a raw query string
    body: Any = None  # None: the operation's valid body; bytes: sent as is
    body_fields: dict[str, Any] | None = None  # merged into the valid body
    headers: Mapping[str, str | bytes | None] = field(default_factory=dict)  # None: not sent


@dataclass
class Operation:
    path: str
    method: str
    spec: dict[str, Any]

    @property
    def parameters(self) -> list[dict[str, Any]]:
        return list(self.spec.get("parameters", []))

    @property
    def body_schema(self) -> str | None:
        content = self.spec.get("requestBody", {}).get("content", {})
        if not content:
            return None
        schema = content["application/json"]["schema"]
        ref: str = schema["items"]["$ref"] if self.body_is_list else schema["$ref"]
        return ref.rsplit("/", 1)[1]

    @property
    def body_is_list(self) -> bool:
        """A list of items (POST /heroes/import): each case's item is sent as a list of one."""
        content = self.spec.get("requestBody", {}).get("content", {})
        return bool(content) and content["application/json"]["schema"].get("type") == "array"

    def url(self, world: World, overrides: dict[str, Any], query: Any) -> str:
        url = self.path
        for param in self.parameters:
            if param["in"] == "path":
                name = param["name"]
                value = overrides.get(name, world.path_value(name))
                encoded = urllib.parse.quote(str(value), safe="", errors="surrogatepass")
                url = url.replace("{" + name + "}", encoded)
        if isinstance(query, str):
            return f"{url}?{query}"
        if query:
            pairs = [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in query]
            return f"{url}?{urllib.parse.urlencode(pairs, errors='surrogatepass')}"
        return url

    def baseline_headers(self) -> dict[str, str]:
        names = {p["name"].lower() for p in self.parameters if p["in"] == "header"}
        return {"If-Match": "*"} if "if-match" in names else {}


def cases_for(op: Operation, world: World) -> Iterator[Case]:
    yield from path_cases(op)
    yield from query_cases(op)
    yield from header_cases(op)
    if op.body_schema:
        yield from body_cases(op)


def path_cases(op: Operation) -> Iterator[Case]:
    for param in op.parameters:
        if param["in"] != "path":
            continue
        schema = resolve(param["schema"])
        extra = ["..", ".", "%2F", "a/b", "%00", "%ED%A0%80", "%FF", " ", "x" * 10_000]
        for value in [*values_for(schema), *extra]:
            if value is None or isinstance(value, (list, dict, Raw)):
                continue  # a path segment is text
            text = value if isinstance(value, str) else json.dumps(value)
            yield Case(f"path {param['name']}={text[:40]!r}", path_values={param["name"]: text})


def query_cases(op: Operation) -> Iterator[Case]:
    params = [p for p in op.parameters if p["in"] == "query"]
    if not params:
        yield Case("unknown query parameter", query=[("unknown", "1")])
        return
    # Parameters of one type share the values: up to 20 conditions per request (the most a
    # filter allows), so every filter field and operator reaches SQL.
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for param in params:
        if param["name"] in ("filter", "cursor", "sort"):
            continue
        schema = resolve(param["schema"])
        item = resolve(schema["items"]) if schema.get("type") == "array" else schema
        key = json.dumps([schema.get("type") == "array", item], sort_keys=True)
        groups.setdefault(key, []).append((param["name"], schema))
    for members in groups.values():
        schema = members[0][1]
        is_list = schema.get("type") == "array"
        item = resolve(schema["items"]) if is_list else schema
        for value in values_for(item):
            if value is None or isinstance(value, Raw):
                continue
            text = value if isinstance(value, str) else json.dumps(value)
            if len(text) > 1_000:
                continue  # a URL (httpx, servers) stops at 64 KB: one long value is enough
            for start in range(0, len(members), 20):
                chunk = members[start : start + 20]
                query = [(name, text) for name, _ in chunk for _ in range(2 if is_list else 1)]
                yield Case(f"query {chunk[0][0]}..={text[:30]!r}", query=query)
        if is_list:
            name = members[0][0]
            for count in (0, 1, 3, 101, 2_000):
                yield Case(f"query {name} x{count}", query=[(name, "1")] * count or "x=")
    names = {p["name"] for p in params}
    yield from raw_query_cases(names)
    if "filter" in names:
        yield from filter_cases()
    if "sort" in names:
        for sort in ["", ",", "-", "name,name", "name:nulls_middle", "x" * 501, "secret_name",
                     "name;DROP", "-" * 400, "name\x00", "ñame", "--name", "name, -name",
                     "-name,name", "name,", "+name"]:  # fmt: skip
            yield Case(f"sort={sort[:20]!r}", query=[("sort", sort)])
    if "cursor" in names:
        for cursor in ["", ".", "a.b", "é.é", "x" * 2001, "=" * 2000, "a" * 1999 + ".",
                       "eyJ2IjpbXSwiZCI6Im5leHQiLCJiIjoiIn0.AAAAAAAAAAAAAAAAAAAAAA", "\x00.\x00",
                       "%ED%A0%80.%FF"]:  # fmt: skip
            yield Case(f"cursor={cursor[:20]!r}", query=[("cursor", cursor)])


def raw_query_cases(names: set[str]) -> Iterator[Case]:
    yield Case("unknown query parameter", query=[("unknown", "1")])
    yield Case("query name with NUL", query=[("limit\x00", "1")])
    yield Case("repeated scalar", query=[("limit", "1"), ("limit", "2")])
    yield Case("invalid UTF-8 in query", query="limit=%FF%FE&sort=%ED%A0%80")
    yield Case("empty names", query="=&&=x&limit")
    yield Case("60 KB query", query="limit=1&" + "&".join(f"p{i}=x" for i in range(8_000)))
    yield Case("long value", query=[(sorted(names)[-1], "x" * 60_000)])
    yield Case("limit float", query=[("limit", "1.0")])
    yield Case("limit 1e400", query=[("limit", "1e400")])
    yield Case("offset huge", query=[("offset", str(2**64))])


def filter_cases() -> Iterator[Case]:
    conditions: list[Any] = [
        {"field": "name", "op": "eq", "value": float("nan")},
        {"field": "name", "op": "eq", "value": SURROGATE},
        {"field": SURROGATE, "op": "eq", "value": 1},
        {"field": "name", "op": SURROGATE, "value": 1},
        {"field": "name", "op": "in", "value": list(range(1000))},
        {"field": "name", "op": "eq", "value": {"nested": [1, 2]}},
        {"field": "name", "op": "eq"},
        {"field": "name", "op": "eq", "value": None},
        {"field": "name", "op": "eq", "value": "😀e\u0301%_\\"},
        {"field": "created_at", "op": "gte", "value": "0001-01-01T00:00:00+14:00"},
        {"field": "created_at", "op": "lte", "value": "9999-12-31T23:59:59-12:00"},
        {"field": "created_at", "op": "between",
         "value": ["0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59.999999+00:00"]},
        {"field": "age", "op": "eq", "value": float("inf")},
        {"field": "age", "op": "eq", "value": 2**70},
        {"field": "age", "op": "eq", "value": True},
        {"field": "age", "op": "between", "value": [2, 1]},
        {"and": [{"field": "name", "op": "eq", "value": "a"}] * 21},
        {"not": {"not": {"not": {"not": {"not": {"field": "name", "op": "eq", "value": "a"}}}}}},
        {"and": []}, {"or": "x"}, {}, [], "x", 1, None,
    ]  # fmt: skip
    for condition in conditions:
        text = dump(condition)
        yield Case(f"filter={text[:40]!r}", query=[("filter", Raw(text))])
    duplicate = '{"field": "name", "field": "age", "op": "eq", "value": 1}'
    for text in ["{not json", "[" * 4999 + "]" * 4999, "{" * 5000, "x" * 10_001, "NaN", "1e400",
                 duplicate, "\x00", ""]:  # fmt: skip
        yield Case(f"filter text {text[:20]!r}", query=[("filter", Raw(text))])


def header_cases(op: Operation) -> Iterator[Case]:
    yield Case("100 KB header", headers={"X-Junk": "x" * 100_000})
    yield Case("non-ASCII header", headers={"X-Junk": "é😀".encode()})
    yield Case("Accept XML", headers={"Accept": "application/xml"})
    yield Case("If-None-Match garbage", headers={"If-None-Match": "\x7f\x01garbage"})
    if "If-Match" not in op.baseline_headers():
        return
    yield Case("If-Match missing", headers={"If-Match": None})
    values: list[str | bytes] = [
        "", "x", "3", '"1', "1\"", '"1"', 'W/"1"', '"1", "2"', '"abc"', '"-1"', '"01"',
        '"' + "9" * 30 + '"', ",", ", ,", '"1",', '*, "1"', "**", 'W/"*"', '"1" x',
        '"' + "1" * 100_000 + '"', b'"\xb2"', b'"\xff"', b"\xff\xfe",
    ]  # fmt: skip
    for value in values:
        yield Case(f"If-Match {value[:20]!r}", headers={"If-Match": value})


def body_cases(op: Operation) -> Iterator[Case]:
    assert op.body_schema
    schema = SPEC["components"]["schemas"][op.body_schema]
    for name, prop in schema["properties"].items():
        yield Case(f"body {name}=null", body_fields={name: None})
        for value in values_for(resolve(prop)):
            text = dump(value)
            yield Case(f"body {name}={text[:40]!r}", body_fields={name: value})
    json_type = {"content-type": "application/json"}
    raw: list[tuple[str, bytes, Mapping[str, str | bytes | None]]] = [
        ("empty", b"", json_type),
        ("null", b"null", json_type),
        ("array", b"[]", json_type),
        ("string", b'"x"', json_type),
        ("number", b"1", json_type),
        ("truncated", b'{"name": "a"', json_type),
        ("trailing garbage", b'{"name": "a"} x', json_type),
        ("comments", b'{/* x */"name": "a"}', json_type),
        ("single quotes", b"{'name': 'a'}", json_type),
        ("invalid UTF-8", b'{"name": "\xff\xfe"}', json_type),
        ("UTF-8 surrogate bytes", b'{"name": "\xed\xa0\x80"}', json_type),
        ("10,000 levels", deep_raw(10_000).encode(), json_type),
        ("object 10,000 levels", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, json_type),
        ("NaN body", b"NaN", json_type),
        (
            "duplicate keys",
            b'{"name": "a", "name": "b", "secret_name": "c", "level": 1}',
            json_type,
        ),
        ("no content type", b'{"name": "a"}', {}),
        ("text/plain", b'{"name": "a"}', {"content-type": "text/plain"}),
        ("form", b"name=a&secret_name=b", {"content-type": "application/x-www-form-urlencoded"}),
        ("multipart", b"--b\r\n\r\n--b--", {"content-type": "multipart/form-data; boundary=b"}),
        ("xml", b"<name>a</name>", {"content-type": "application/xml"}),
        ("garbage content type", b"{}", {"content-type": "\x01/\x02"}),
    ]
    for label, content, headers in raw:
        yield Case(f"raw body {label}", body=content, headers=headers)
    if op.body_is_list:
        item = json.dumps({"name": "a", "secret_name": "b"}).encode()
        lists = [
            ("list of 5,001", b"[" + b",".join([item] * 5_001) + b"]"),
            ("list 9 MB", b"[" + b" " * 9_000_000 + b"]"),
            ("list twice the same item", b"[" + item + b"," + item + b"]"),
            ("list of null", b"[null]"),
            ("list of lists", b"[[]]"),
            ("object, not a list", item),
        ]
        for label, content in lists:
            yield Case(f"raw body {label}", body=content, headers=json_type)


# ---------------------------------------------------------------- checks


async def snapshot(session: AsyncSession) -> dict[str, list[Any]]:
    rows = {}
    for table in SQLModel.metadata.sorted_tables:
        order = ", ".join(column.name for column in table.primary_key.columns)
        rows[table.name] = await raw_rows(session, f"SELECT * FROM {table.name} ORDER BY {order}")
    return rows


def refusal_problem(response: Response) -> str | None:
    """What is wrong with a 4xx body, or None: JSON, with `detail` naming the problem."""
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        return f"not JSON: {response.content[:200]!r}"
    if not isinstance(body, dict) or not body.get("detail"):
        return f"no detail: {response.text[:200]}"
    if isinstance(body["detail"], list):
        for error in body["detail"]:
            if not error.get("loc") or not error.get("msg"):
                return f"validation error without loc/msg: {error}"
    if any(word in response.text for word in LEAKS):
        return f"leaks database details: {response.text[:300]}"
    return None


def same(sent: Any, stored: Any) -> bool:
    """Equal as JSON values: 1e23 and 100000000000000000000000 are the same JSON number."""
    if isinstance(sent, dict) and isinstance(stored, dict):
        return sent.keys() == stored.keys() and all(same(v, stored[k]) for k, v in sent.items())
    if isinstance(sent, list) and isinstance(stored, list):
        return len(sent) == len(stored) and all(map(same, sent, stored))
    if isinstance(stored, bool) or stored is None:
        return sent is stored
    if isinstance(stored, int | float) and isinstance(sent, bool | str):
        # Pydantic's lax mode for an integer field: true -> 1, "1" -> 1 (the value is kept)
        return bool(float(sent) == stored)
    if isinstance(sent, int | float) and isinstance(stored, int | float):
        return sent == stored or float(sent) == float(stored)
    return bool(sent == stored)


async def read_back(client: AsyncClient, op: Operation, url: str, response: Response) -> Any:
    """The resource as stored after an accepted write: its GET, else what the write returned."""
    written = response.json() if response.content else None
    path, url = op.path, url.split("?")[0]
    if op.method == "POST" and isinstance(written, dict) and "id" in written:
        items = [
            p
            for p in SPEC["paths"]
            if p.startswith(f"{path}/{{") and p.count("/") == path.count("/") + 1
        ]
        path, url = (items[0], f"{url}/{written['id']}") if items else ("", url)
    if "get" not in SPEC["paths"].get(path, {}):
        return written
    read = await client.get(url)
    assert read.status_code == 200, read.text
    return read.json()


@dataclass
class Tables:
    """Every row of every table, read again only after something may have changed them."""

    session: AsyncSession
    rows: dict[str, list[Any]] | None = None

    async def now(self) -> dict[str, list[Any]]:
        if self.rows is None:
            self.rows = await snapshot(self.session)
        return self.rows

    async def unchanged_since(self, before: dict[str, list[Any]]) -> bool:
        self.rows = None
        return await self.now() == before


async def run_case(
    client: AsyncClient, tables: Tables | None, op: Operation, world: World, case: Case
) -> tuple[str | None, Response | None]:
    merged = {**op.baseline_headers(), **case.headers}
    headers: dict[str, Any] = {k: v for k, v in merged.items() if v is not None}
    url = op.url(world, case.path_values, case.query)
    content: bytes | None = None
    sent: dict[str, Any] | None = None
    if op.body_schema:
        if isinstance(case.body, bytes):
            content = case.body
        else:
            sent = {**world.body(op.body_schema), **(case.body_fields or {})}
            body: Any = [sent] if op.body_is_list else sent
            content = dump(body).encode("utf-8", "surrogatepass")
            headers.setdefault("content-type", "application/json")
    before = await tables.now() if tables and op.method in WRITES else None
    if tables and before is not None:
        tables.rows = None  # from here on, re-read unless the request is refused unchanged
    try:
        response = await client.request(op.method, url, content=content, headers=dict(headers))
    except Exception as error:  # an exception out of the app: a 500 for a real client
        return f"raised {type(error).__name__}: {str(error)[:300]}", None
    if response.status_code >= 500:
        return f"{response.status_code} {response.text[:300]}", response
    if response.status_code >= 300:  # a redirect ("/teams/" -> "/teams") writes nothing either
        problem = refusal_problem(response) if response.status_code >= 400 else None
        if problem:
            return f"{response.status_code} {problem}", response
        if tables and before is not None and not await tables.unchanged_since(before):
            return f"refused ({response.status_code}) but rows changed", response
        return None, response
    if sent and op.method != "DELETE":
        stored = await read_back(client, op, url, response)
        if isinstance(stored, dict):
            attributes = stored.get("attributes")
            if isinstance(attributes, dict) and "welcomed" not in sent.get("attributes", {}):
                attributes.pop("welcomed", None)  # added after a create by a background task
            for name, value in sent.items():
                if name in stored and not same(value, stored[name]):
                    return f"accepted {name}={dump(value)[:80]} but stored {stored[name]!r}", None
    return None, response


# ---------------------------------------------------------------- the tests


def ids(operations: list[tuple[str, str]]) -> list[str]:
    return [f"{method} {path}" for path, method in operations]


async def walk(
    client: AsyncClient, session: AsyncSession | None, path: str, method: str
) -> list[str]:
    """Every hostile case for one operation, then a valid request; returns the failures."""
    op = Operation(path, method, SPEC["paths"][path][method.lower()])
    world = await make_world(client) if session else World(1, "-", 1)
    tables = Tables(session) if session else None
    failures: list[str] = []
    for case in [*cases_for(op, world), Case("valid request")]:
        failure, response = await run_case(client, tables, op, world, case)
        if failure:
            failures.append(f"{method} {path} [{case.label}]: {failure}")
        elif case.label == "valid request" and (response is None or response.status_code >= 300):
            failures.append(f"{method} {path} [valid request]: {response and response.text}")
        elif response is not None and response.status_code < 300 and method == "DELETE":
            world = await make_world(client)  # aim the next case at a row that exists
    return failures


SESSION_OPERATIONS = [(p, m) for p, m in OPERATIONS if p not in OWN_ENGINE]
ENGINE_OPERATIONS = [(p, m) for p, m in OPERATIONS if p in OWN_ENGINE]
assert len(ENGINE_OPERATIONS) == len(OWN_ENGINE), "an OWN_ENGINE path is not in the app"


@pytest.mark.parametrize(("path", "method"), SESSION_OPERATIONS, ids=ids(SESSION_OPERATIONS))
async def test_hostile_input_is_refused_cleanly(
    client: AsyncClient, session: AsyncSession, path: str, method: str
) -> None:
    failures = await walk(client, session, path, method)
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:60])


@pytest.mark.parametrize(("path", "method"), ENGINE_OPERATIONS, ids=ids(ENGINE_OPERATIONS))
async def test_hostile_input_on_the_live_app(
    live_app: LiveAppFactory, path: str, method: str
) -> None:
    async with live_app() as live:
        failures = await walk(live.client, None, path, method)
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:60])


def test_every_schema_type_has_hostile_values() -> None:
    """A new parameter or body field of a type this file doesn't know fails here."""
    unknown = []
    for path, method in OPERATIONS:
        op = Operation(path, method, SPEC["paths"][path][method.lower()])
        schemas = [p["schema"] for p in op.parameters if p["in"] != "header"]
        if op.body_schema:
            schemas += SPEC["components"]["schemas"][op.body_schema]["properties"].values()
        for schema in schemas:
            resolved = resolve(schema)
            if resolved.get("type") == "array":
                resolved = resolve(resolved["items"])
            try:
                values_for(resolved)
            except LookupError as error:
                unknown.append(f"{method} {path}: {error}")
    assert not unknown


# ---------------------------------------------------------------- one test per finding


def body_operations() -> list[tuple[str, str, type[SQLModel], type[SQLModel]]]:
    """(method, path, data model, table model) for every operation that takes a body."""
    found = []
    for path, method in OPERATIONS:
        op = Operation(path, method, SPEC["paths"][path][method.lower()])
        if op.body_schema:
            table = re.sub(r"(Create|Update|Grant)$", "", op.body_schema)
            found.append((method, path, getattr(schemas, op.body_schema), getattr(models, table)))
    return found


async def test_null_for_a_not_null_column_is_a_422_naming_the_field(
    client: AsyncClient, session: AsyncSession
) -> None:
    """Every Create/Update field whose column is NOT NULL refuses null at the boundary (a
    validation error naming the field, not the database's ConstraintViolation)."""
    world = await make_world(client)
    checked = []
    for method, path, data_model, table_model in body_operations():
        op = Operation(path, method, SPEC["paths"][path][method.lower()])
        columns = table_model.__table__.columns  # type: ignore[attr-defined]
        for name in data_model.model_fields:
            if name not in columns or columns[name].nullable:
                continue
            failure, response = await run_case(
                client, Tables(session), op, world, Case(f"{name}=null", body_fields={name: None})
            )
            assert failure is None, failure
            assert response is not None
            assert response.status_code == 422, (method, path, name, response.text)
            loc = ["body", 0, name] if op.body_is_list else ["body", name]
            assert loc in [e["loc"][: len(loc)] for e in response.json()["detail"]], (
                method, path, response.text,
            )  # fmt: skip
            checked.append(f"{data_model.__name__}.{name}")
    assert {"HeroUpdate.name", "HeroUpdate.status", "HeroUpdate.attributes"} <= set(checked)
    assert {"TeamUpdate.name", "TeamUpdate.headquarters", "HeroCreate.attributes"} <= set(checked)


def test_money_is_a_bounded_decimal() -> None:
    """Decimal refuses NaN and Infinity by default; max_digits/decimal_places: Numeric(10, 2)."""
    money = TypeAdapter(Annotated[Decimal, Field(max_digits=10, decimal_places=2)])
    assert money.validate_json('"12345678.90"') == Decimal("12345678.90")
    for value in ('"NaN"', '"Infinity"', '"-Infinity"', '"1.005"', '"123456789.0"'):
        with pytest.raises(ValidationError):
            money.validate_json(value)


async def test_json_integers_past_int64_are_stored_exactly(
    client: AsyncClient, session: AsyncSession, backend: Backend
) -> None:
    """jsonb keeps them as numeric, MariaDB and SQLite as the JSON text: exact on all three.
    Only SQLite's JSON functions read them as REAL (rounded; 10**400 is inf)."""
    for number in (2**63, -(2**63) - 1, 10**20, 10**400):
        name = f"n{number % 997}"
        body = f'{{"name": "{name}", "secret_name": "{name}", "attributes": {{"x": {number}}}}}'
        response = await client.post("/heroes", content=body, headers=JSON)
        assert response.status_code == 201, response.text
        text = "CHAR" if backend.name == "mysql" else "TEXT"  # the stored text, not decoded
        sql = f"SELECT CAST(attributes AS {text}) FROM hero WHERE name = :name"
        ((stored,),) = await raw_rows(session, sql, name=name)
        assert json.loads(stored)["x"] == number
    if backend.name == "sqlite":
        sql = "SELECT json_extract(attributes, '$.x') FROM hero WHERE name = :name"
        assert await raw_rows(session, sql, name=f"n{2**63 % 997}") == [(2.0**63,)]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
async def test_non_finite_numbers_are_a_422_and_store_nothing(
    client: AsyncClient, session: AsyncSession, number: str
) -> None:
    """Python's json (so Starlette) reads NaN, Infinity and 1e400 (as inf). They were a 500 on
    PostgreSQL and MariaDB and stored as null on SQLite."""
    hero = (await client.post("/heroes", json={"name": "n", "secret_name": "s"})).json()
    before = await snapshot(session)
    bodies = [
        f'{{"name": "a", "secret_name": "b", "attributes": {{"x": {number}}}}}',
        f'{{"name": "a", "secret_name": "b", "attributes": {{"a": {{"b": [1, {number}]}}}}}}',
        f'{{"name": "a", "secret_name": "b", "age": {number}}}',
    ]
    for body in bodies:
        response = await client.post("/heroes", content=body, headers=JSON)
        assert response.status_code == 422, response.text
        patched = await client.patch(
            f"/heroes/{hero['id']}", content=body, headers={**JSON, "If-Match": "*"}
        )
        assert patched.status_code == 422, patched.text
    assert await snapshot(session) == before


async def test_a_lone_surrogate_is_a_422_whose_body_can_be_encoded(client: AsyncClient) -> None:
    """FastAPI's own handler echoed the input back; a lone surrogate can't be encoded as UTF-8,
    so its 422 became a 500 (UnicodeEncodeError). Now: the field and the rule, no input."""
    bodies = [
        '{"name": "\\ud800", "secret_name": "b"}',
        '{"name": "a", "secret_name": "b", "attributes": {"\\ud800": 1}}',
        '{"name": "a", "secret_name": "b", "age": NaN}',  # NaN echoed back: not JSON either
    ]
    for body in bodies:
        response = await client.post("/heroes", content=body, headers=JSON)
        assert response.status_code == 422, response.text
        errors = response.json()["detail"]
        assert all(set(error) == {"type", "loc", "msg"} for error in errors), errors
    key_error = (await client.post("/heroes", content=bodies[1], headers=JSON)).json()
    assert [e["loc"][:2] for e in key_error["detail"]] == [["body", "attributes"]]
    assert (await client.get("/heroes")).json()["total"] == 0


@pytest.mark.parametrize(
    ("if_match", "status", "error"),
    [
        (None, 428, "PreconditionRequired"),  # required: no lost updates by omission
        ("x", 400, "InvalidPrecondition"),  # not the RFC 9110 grammar
        ('"2', 400, "InvalidPrecondition"),
        ('"2" "3"', 400, "InvalidPrecondition"),  # a list needs commas
        ('W/"2"', 412, "StaleVersion"),  # weak tags never match (strong comparison)
        ('"02"', 412, "StaleVersion"),  # opaque tags compare as text
        ('"1"', 412, "StaleVersion"),  # stale
        ('"abc", "7"', 412, "StaleVersion"),  # well-formed, none is current
        ("", 412, "StaleVersion"),  # an empty list: nothing can match
        ('"1", "2"', 200, None),  # a list matches if any tag does
        (' "9" ,, W/"1", "2" ', 200, None),  # whitespace and empty elements are allowed
        ("*", 200, None),  # any current representation
        # Several header lines are one comma-separated list (RFC 9110 5.3):
        (["*", '"1"'], 400, "InvalidPrecondition"),  # * alone or tags, never both
        (['"1"', '"2"'], 200, None),  # the current tag on the second line
        (['"1"', 'W/"2"'], 412, "StaleVersion"),
    ],
)
async def test_if_match_follows_rfc_9110(
    client: AsyncClient, if_match: str | list[str] | None, status: int, error: str | None
) -> None:
    hero = (await client.post("/heroes", json={"name": "a", "secret_name": "b"})).json()
    read = await client.get(f"/heroes/{hero['id']}")
    assert read.headers["ETag"] == '"2"'  # 1, then the background task's welcome
    lines = [] if if_match is None else [if_match] if isinstance(if_match, str) else if_match
    headers = [("If-Match", line) for line in lines]
    response = await client.patch(f"/heroes/{hero['id']}", json={"age": 7}, headers=headers)
    assert response.status_code == status, response.text
    after = await client.get(f"/heroes/{hero['id']}")
    if error:
        assert response.json()["error"] == error
        assert (after.json()["age"], after.headers["ETag"]) == (None, '"2"')  # untouched
    else:
        assert (after.json()["age"], after.headers["ETag"]) == (7, '"3"')
        assert response.headers["ETag"] == '"3"'


async def test_if_match_on_an_unknown_hero_is_a_404(client: AsyncClient) -> None:
    """RFC 9110 13.2.1: a precondition is evaluated only where the request would succeed."""
    unknown = "/heroes/00000000-0000-0000-0000-000000000000"
    for if_match in ('"1"', "*", 'W/"1"'):
        response = await client.patch(unknown, json={"age": 1}, headers={"If-Match": if_match})
        assert response.status_code == 404, response.text


@pytest.mark.parametrize(
    ("path", "params"),
    [
        # aware, but before year 1 / after 9999 in UTC: OverflowError when bound (a 500)
        ("/admin/heroes", {"created_at__gte": "0001-01-01T00:00:00+14:00"}),
        ("/teams", {"created_at__lt": "9999-12-31T23:59:59-12:00"}),
        ("/admin/heroes",
         {"filter": '{"field": "created_at", "op": "gt", "value": "0001-01-01T00:00+01"}'}),
        # json.loads raised RecursionError (a 500): 10,000 characters nest 5,000 levels
        ("/admin/heroes", {"filter": "[" * 5_000 + "]" * 5_000}),
        # hmac.compare_digest raised TypeError on a str with non-ASCII characters (a 500)
        ("/heroes/feed", {"cursor": "é.é"}),
    ],
)  # fmt: skip
async def test_query_edges_that_were_server_errors_are_422s(
    client: AsyncClient, path: str, params: dict[str, str]
) -> None:
    response = await client.get(path, params=params)
    assert response.status_code == 422, response.text
    assert refusal_problem(response) is None


async def test_json_depth_and_size_limits_hold_on_every_backend(
    client: AsyncClient, session: AsyncSession
) -> None:
    """At the limits a document is stored and reads back; one level or byte more is a 422.
    MariaDB's JSON CHECK refused 32 levels (error 4025, a 500) and a statement over
    max_allowed_packet dropped the connection."""
    deepest = {"x": nested(JSON_MAX_DEPTH - 1)}  # the document is level 1
    largest = {"x": "a" * (JSON_MAX_BYTES - len('{"x": ""}'))}
    for name, document in [("deep", deepest), ("large", largest)]:
        created = await client.post(
            "/heroes", json={"name": name, "secret_name": name, "attributes": document}
        )
        assert created.status_code == 201, created.text[:300]
        stored = (await client.get(f"/heroes/{created.json()['id']}")).json()["attributes"]
        assert stored == {**document, "welcomed": True}
    before = await snapshot(session)
    for document in [{"x": nested(JSON_MAX_DEPTH)}, {"x": "a" * JSON_MAX_BYTES}]:
        refused = await client.post(
            "/heroes", json={"name": "n", "secret_name": "s", "attributes": document}
        )
        assert refused.status_code == 422, refused.text[:300]
        assert "JSON" in refused.json()["detail"][0]["msg"]
    assert await snapshot(session) == before


async def test_a_422_names_keys_never_values(client: AsyncClient) -> None:
    key, value = "key-a1b2c3", "value-d4e5f6"
    body = f'{{"name": "a", "secret_name": "b", "attributes": {{"{key}": "{value}\\u0000"}}}}'
    refused = await client.post("/heroes", content=body, headers=JSON)
    assert refused.status_code == 422, refused.text
    assert key in refused.text  # loc: the client's own key, to find the error by
    assert value not in refused.text
    parsed = await client.get("/heroes/x-secret-id")
    assert parsed.status_code == 422
    assert "found `x` at 0" in parsed.json()["detail"][0]["msg"]  # one character of it
    assert "secret" not in parsed.text


def test_if_match_parsing() -> None:
    """The header grammar on its own, including the optional mode the reference mentions."""
    assert if_match_versions('"3"') == frozenset({3})
    assert if_match_versions(' "a,b" , W/"4",, "5" ') == frozenset({5})  # a tag may contain a comma
    assert if_match_versions("*") is None
    assert if_match_versions(['"3"', ' "4"']) == frozenset({3, 4})  # header lines: one list
    with pytest.raises(InvalidPrecondition):
        if_match_versions(["*", '"3"'])
    assert if_match_versions(None, required=False) is None
    with pytest.raises(PreconditionRequired):
        if_match_versions(None)
    for malformed in ["3", '"3" "4"', '"3', "W/3", " " * 100_000 + "x", '"1",' * 50_000 + "x"]:
        with pytest.raises(InvalidPrecondition):
            if_match_versions(malformed)  # and quickly: the pattern never backtracks


async def test_integers_take_pydantic_lax_booleans_and_numeric_strings(client: AsyncClient) -> None:
    """Not refused, and the value is kept: Pydantic's lax mode converts these for an int field."""
    for n, sent in enumerate([True, "1", " 1 ", 1.0]):
        body = {"name": f"h{n}", "secret_name": f"s{n}", "age": sent}
        hero = await client.post("/heroes", json=body)
        assert (hero.status_code, hero.json()["age"]) == (201, 1), hero.text
    assert (await client.post("/heroes", json={**body, "age": 1.5})).status_code == 422

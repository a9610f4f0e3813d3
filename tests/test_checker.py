"""scripts/check_async_sqlmodel.py: every rule fires on its pitfall and not on the near miss."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from scripts.check_async_sqlmodel import RULES, check

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "scripts" / "check_async_sqlmodel.py"
FIXTURES = Path(__file__).parent / "checker_fixtures"

HEAD = """
import asyncio, uuid
from datetime import datetime
from fastapi import APIRouter, Depends, FastAPI
from httpx import AsyncClient, ASGITransport
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlmodel import Field, Relationship, Session, SQLModel, create_engine, select
router = APIRouter()
app = FastAPI()
"""

# rule: (code that must be flagged, near miss that must not be)
CASES: dict[str, tuple[str, str]] = {
    "ASM001": (
        "async def f():\n    e = create_engine('sqlite://')",
        "def f():\n    e = create_engine('sqlite://')",
    ),
    "ASM002": (
        "async def f(e):\n    with Session(e) as s:\n        pass",
        "def f(e):\n    with Session(e) as s:\n        pass",
    ),
    "ASM003": (
        "f = async_sessionmaker(engine)",
        "f = async_sessionmaker(engine, expire_on_commit=False)\n"
        "g = async_sessionmaker(engine, **options)  # can't tell: not reported",
    ),
    "ASM004": (
        "async def f(session):\n    return await session.exec(select(X)).first()",
        "async def f(session):\n    return (await session.exec(select(X))).first()",
    ),
    "ASM005": (
        "async def f(session):\n    session.commit()",
        "async def f(session):\n    await session.commit()\n    session.add(x)",
    ),
    "ASM006": (
        "class A(SQLModel, table=True):\n    b: list['B'] = Relationship()",
        "class A(SQLModel, table=True):\n"
        "    b: list['B'] = Relationship(sa_relationship_kwargs={'lazy': 'raise'})",
    ),
    "ASM007": (
        "engine = create_async_engine('sqlite+aiosqlite://')\n"
        "event.listen(engine, 'connect', print)",
        "event.listen(engine.sync_engine, 'connect', print)",
    ),
    "ASM008": (
        "class A(SQLModel, table=True):\n    id: uuid.UUID = Field(default=uuid.uuid4())",
        "class A(SQLModel, table=True):\n    id: uuid.UUID = Field(default_factory=uuid.uuid4)",
    ),
    "ASM009": ("stamp = datetime.utcnow()", "stamp = datetime.now()"),
    "ASM010": (
        "URL = 'mariadb+aiomysql://db/app'\nclass A(SQLModel, table=True):\n    at: datetime",
        "URL = 'mariadb+aiomysql://db/app'\n"
        "class A(SQLModel, table=True):\n    at: datetime = Field(sa_type=UTC)",
    ),
    "ASM011": (
        "class A(SQLModel, table=True):\n    name: str",
        "class A(SQLModel, table=True):\n    name: str = Field(max_length=50)",
    ),
    "ASM012": (
        "class A(SQLModel, table=True):\n    pass\n"
        "@router.post('/a')\nasync def create(a: A):\n    pass",
        "class A(SQLModel, table=True):\n    pass\nclass ACreate(SQLModel):\n    pass\n"
        "@router.post('/a')\nasync def create(a: ACreate):\n    pass",
    ),
    "ASM013": ("data = model.dict()", "data = model.model_dump()\nsame = {}.copy()"),
    "ASM014": (
        "q = text(f\"SELECT * FROM hero WHERE name = '{name}'\")",
        "q = text('SELECT * FROM hero WHERE name = :name')\n"
        "d = text(f'DROP DATABASE `{name}`')\ne = text(f'TRUNCATE \"{table}\"')",
    ),
    "ASM015": (
        "cond = Hero.name.like(f'%{term}%')",
        "cond = Hero.name.contains(term, autoescape=True)\n"
        "also = Hero.name.ilike(f'%{escape_like(term)}%', escape='\\\\')",
    ),
    "ASM016": ("q = select(X).order_by(text(sort))", "q = select(X).order_by(text('name'))"),
    "ASM017": (
        "async def f(session):\n    await asyncio.gather(a(session), b(session))",
        "async def f(factory):\n    await asyncio.gather(a(factory), b(factory))",
    ),
    "ASM018": (
        "async def get_session():\n    async with factory() as s, s.begin():\n"
        "        yield s\nDep = Depends(get_session)",
        "async def get_session():\n    async with factory() as s, s.begin():\n"
        "        yield s\nDep = Depends(get_session, scope='function')",
    ),
    "ASM019": (
        "async def lifespan(app):\n    engine = create_async_engine('x')\n    yield",
        "async def lifespan(app):\n    engine = create_async_engine('x')\n    yield\n"
        "    await engine.dispose()",
    ),
    "ASM020": (
        "@app.on_event('startup')\nasync def start():\n    pass",
        "@app.get('/startup')\nasync def start():\n    pass",
    ),
    "ASM022": (
        "connectable = create_async_engine('x')\nwith connectable.connect() as c:\n    pass",
        "connectable = create_async_engine('x')\n"
        "async def f():\n    async with connectable.connect() as c:\n        pass",
    ),
    "ASM023": (
        "c = AsyncClient(app=app)",
        "c = AsyncClient(transport=ASGITransport(app=app), base_url='http://t')",
    ),
    "ASM024": (
        "import pytest\n@pytest.fixture\ndef event_loop():\n    pass",
        "import pytest\n@pytest.fixture\ndef loop_policy():\n    pass",
    ),
    "ASM025": (
        "from sqlalchemy import select as sa_select\nfrom sqlalchemy import select\n"
        "async def f(session):\n    await session.exec(select(X))",
        "async def f(session):\n    await session.exec(select(X))",
    ),
    "ASM026": (
        "engine = create_async_engine('x')\nfactory = async_sessionmaker(engine)",
        "engine = create_async_engine('x')\n"
        "async def lifespan(app):\n    yield\n    await engine.dispose()",
    ),
}


def findings_for(tmp_path: Path, code: str, name: str = "module.py") -> set[str]:
    path = tmp_path / name
    path.write_text(HEAD + textwrap.dedent(code) + "\n")
    return {finding.rule for finding in check([path])}


def test_every_rule_has_a_case() -> None:
    assert set(CASES) | {"ASM021"} == set(RULES)
    assert len(RULES) >= 20


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_flags_the_pitfall_and_not_the_near_miss(tmp_path: Path, rule: str) -> None:
    name = "env.py" if rule == "ASM022" else "module.py"
    bad, good = CASES[rule]
    assert rule in findings_for(tmp_path, bad, name)
    assert rule not in findings_for(tmp_path, good, name)


@pytest.mark.parametrize(
    "code",
    [
        "if True:\n    engine = create_async_engine('x')",  # still at import
        "factory = async_sessionmaker(create_async_engine('x'), expire_on_commit=False)",
        "class Db:\n    engine = create_async_engine('x')",
        "engine = create_async_engine('x')\nother = create_async_engine('y')\n"
        "async def lifespan(app):\n    yield\n    await other.dispose()",  # the wrong one
    ],
)
def test_an_engine_created_at_import_must_be_disposed(tmp_path: Path, code: str) -> None:
    assert "ASM026" in findings_for(tmp_path, code)


@pytest.mark.parametrize(
    "code",
    [
        "async def lifespan(app):\n    engine = create_async_engine('x')\n    yield\n"
        "    await engine.dispose()",
        "def make_engine(url):\n    return create_async_engine(url)",
        "engine = create_async_engine('x')\n"
        "async def lifespan(app):\n    async with AsyncExitStack() as stack:\n"
        "        stack.push_async_callback(engine.dispose)\n        yield",
        "engines = {'main': create_async_engine('x')}\n"
        "async def shutdown():\n    for e in engines.values():\n        await e.dispose()",
    ],
)
def test_engines_created_later_or_disposed_are_fine(tmp_path: Path, code: str) -> None:
    assert "ASM026" not in findings_for(tmp_path, code)


def test_an_engine_disposed_in_another_module_is_fine(tmp_path: Path) -> None:
    (tmp_path / "db.py").write_text("engine = create_async_engine('x')\n")
    (tmp_path / "main.py").write_text(
        "from app import db\nasync def lifespan(app):\n    yield\n    await db.engine.dispose()\n"
    )
    assert [f.rule for f in check([tmp_path])] == []
    assert [f.rule for f in check([tmp_path / "db.py"])] == ["ASM026"]


def test_whole_second_datetimes_are_reported_only_for_mysql_projects(tmp_path: Path) -> None:
    """SQLModel's datetime type is timestamptz on PostgreSQL: ASM010 is noise there."""
    (tmp_path / "models.py").write_text("class A(SQLModel, table=True):\n    at: datetime\n")
    # Code copied from a multi-backend example names MySQL in a PostgreSQL project: no report.
    (tmp_path / "db.py").write_text('MYSQL = ("mysql", "mariadb")  # mysql+aiomysql://\n')
    (tmp_path / "requirements.txt").write_text("sqlmodel\nasyncpg\n")
    assert [f.rule for f in check([tmp_path])] == []
    (tmp_path / "requirements.txt").write_text("sqlmodel\naiomysql\n")
    assert [f.rule for f in check([tmp_path])] == ["ASM010"]
    (tmp_path / "requirements.txt").unlink()
    (tmp_path.parent / ".env").write_text("DATABASE_URL=mariadb+aiomysql://app@db/app\n")
    try:
        assert [f.rule for f in check([tmp_path / "models.py"])] == ["ASM010"]  # found above
    finally:
        (tmp_path.parent / ".env").unlink()


def test_alembic_template_needs_import_sqlmodel(tmp_path: Path) -> None:
    template = tmp_path / "script.py.mako"
    template.write_text("import sqlalchemy as sa\n${upgrades}\n")
    assert [f.rule for f in check([template])] == ["ASM021"]
    template.write_text("import sqlalchemy as sa\nimport sqlmodel\n${upgrades}\n")
    assert check([template]) == []


def test_examples_are_clean_except_the_deliberate_pitfalls() -> None:
    findings = check([ROOT / "examples", ROOT / "scripts", ROOT / "benchmarks"])
    outside = [f.text() for f in findings if not f.path.endswith("examples/pitfalls.py")]
    assert outside == []
    expected = {"ASM003", "ASM004", "ASM010", "ASM011", "ASM017", "ASM018"}
    assert {f.rule for f in findings} == expected


def test_no_false_positives_on_realistic_code() -> None:
    findings = check([FIXTURES])
    assert [f.text() for f in findings] == []


def test_suppression_names_the_rule(tmp_path: Path) -> None:
    assert "ASM009" not in findings_for(tmp_path, "t = datetime.utcnow()  # check: ignore[ASM009]")
    assert "ASM009" in findings_for(tmp_path, "t = datetime.utcnow()  # check: ignore[ASM001]")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_output_exit_codes_and_filters(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from datetime import datetime\nstamp = datetime.utcnow()\n")
    result = run_cli(str(bad))
    assert result.returncode == 1
    line = result.stdout.strip()
    assert line.startswith(f"{bad}:2:9 ASM009 ")
    assert "(fix: datetime.now(UTC); see references/models.md#timezone-aware-timestamps)" in line
    as_json = json.loads(run_cli(str(bad), "--format", "json").stdout)
    assert as_json[0]["rule"] == "ASM009"
    assert run_cli(str(bad), "--ignore", "ASM009").returncode == 0
    assert run_cli(str(bad), "--select", "ASM001").returncode == 0
    assert run_cli(str(FIXTURES)).returncode == 0
    assert run_cli(str(bad), "--select", "NOPE").returncode == 2
    assert run_cli(str(tmp_path / "missing.py")).returncode == 2
    assert "ASM001" in run_cli("--help").stdout
    assert "2 incomplete" in run_cli("--help").stdout


def test_a_file_that_cannot_be_parsed_is_an_error_not_a_pass(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("async def f(:\n    pass\n")
    (tmp_path / "bad.py").write_text("from datetime import datetime\nstamp = datetime.utcnow()\n")
    result = run_cli(str(tmp_path))
    assert result.returncode == 2  # not 0 (clean) and not 1 (findings): the check is incomplete
    assert f"{tmp_path / 'broken.py'}:1: cannot parse" in result.stderr
    assert "ASM009" in result.stdout  # the other files are still checked
    alone = run_cli(str(tmp_path / "broken.py"), "--format", "json")
    assert (alone.returncode, json.loads(alone.stdout)) == (2, [])


def test_references_named_by_rules_exist() -> None:
    for rule in RULES.values():
        page, _, anchor = rule.see.partition("#")
        text = (ROOT / "references" / page).read_text()
        assert f"(#{anchor})" in text, rule.see  # the anchor is in the page's contents list

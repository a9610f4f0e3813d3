#!/usr/bin/env python3
"""Find the async SQLModel / SQLAlchemy / FastAPI / Alembic pitfalls this skill teaches.

    python scripts/check_async_sqlmodel.py PATH [PATH ...] [--format text|json]
                                           [--select ID,...] [--ignore ID,...]

Reads Python files (and Alembic's script.py.mako) with `ast`; never imports them. Suppress a
finding on its line with a comment naming the rule: `# check: ignore[ASM004]`.
Exit status: 0 no findings, 1 findings, 2 the check is incomplete: a usage error, or a file that
can't be read or parsed (named on stderr; the other files are still checked and reported).
Standard library only, Python 3.11+.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

MAX_FINDINGS = 500
SUPPRESS = re.compile(r"#\s*check:\s*ignore\[([A-Z0-9, ]+)\]")


@dataclass(frozen=True)
class Rule:
    message: str
    fix: str
    see: str


RULES: dict[str, Rule] = {
    "ASM001": Rule(
        "sync create_engine() in async code", "create_async_engine()", "database-setup.md#engine"
    ),
    "ASM002": Rule(
        "sync Session/sessionmaker in async code",
        "async_sessionmaker(engine, class_=AsyncSession)",
        "database-setup.md#session-factory",
    ),
    "ASM003": Rule(
        "async_sessionmaker without expire_on_commit=False",
        "pass expire_on_commit=False (attribute reads after commit raise MissingGreenlet)",
        "database-setup.md#session-factory",
    ),
    "ASM004": Rule(
        "method called on the coroutine, not its result",
        "(await session.exec(q)).first()",
        "async-operations.md#errors-and-their-fixes",
    ),
    "ASM005": Rule("async session method not awaited", "await it", "async-operations.md#queries"),
    "ASM006": Rule(
        "relationship without an explicit lazy strategy",
        'sa_relationship_kwargs={"lazy": "raise"} and a loader option in the query',
        "relationships.md#the-rule-nothing-loads-implicitly",
    ),
    "ASM007": Rule(
        "event listener on an AsyncEngine",
        "listen on engine.sync_engine",
        "database-setup.md#sqlite-connections",
    ),
    "ASM008": Rule(
        "default evaluated once, at import",
        "default_factory=uuid4 / a server default",
        "models.md#table-models",
    ),
    "ASM009": Rule(
        "datetime.utcnow() is deprecated and naive",
        "datetime.now(UTC)",
        "models.md#timezone-aware-timestamps",
    ),
    "ASM010": Rule(
        "datetime column on SQLModel's default type (whole seconds on MySQL/MariaDB; reported"
        " only when a project file names a MySQL/MariaDB driver or URL)",
        "sa_type=UTCDateTime from types.py (DATETIME(6) on MySQL)",
        "models.md#timezone-aware-timestamps",
    ),
    "ASM011": Rule(
        "str column without max_length", "Field(max_length=...)", "models.md#strings-need-a-length"
    ),
    "ASM012": Rule(
        "table model used as a request body",
        "accept an XCreate/XUpdate data model",
        "models.md#data-models-create-update-public",
    ),
    "ASM013": Rule(
        "Pydantic v1 API",
        "model_dump(), model_validate(), model_config = {...} (ConfigDict(...) on plain Pydantic)",
        "models.md#data-models-create-update-public",
    ),
    "ASM014": Rule(
        "values formatted into text()",
        "bound parameters: text('... :name'), {'name': v}",
        "async-operations.md#raw-sql",
    ),
    "ASM015": Rule(
        "LIKE pattern built from a value",
        "column.contains(value, autoescape=True)",
        "servicebase.md#operators-and-backend-differences",
    ),
    "ASM016": Rule(
        "order_by(text(...)) from a variable",
        "map allowed names to columns",
        "servicebase.md#sorting",
    ),
    "ASM017": Rule(
        "one session shared by concurrent tasks",
        "one session per task",
        "async-operations.md#concurrency-one-session-per-task",
    ),
    "ASM018": Rule(
        "yield dependency commits after the response",
        'Depends(dep, scope="function")',
        "fastapi-integration.md#commit-before-the-response",
    ),
    "ASM019": Rule(
        "lifespan creates an engine and never disposes it",
        "await engine.dispose()",
        "fastapi-integration.md#app-factory-and-lifespan",
    ),
    "ASM020": Rule(
        "@app.on_event is deprecated",
        "a lifespan",
        "fastapi-integration.md#app-factory-and-lifespan",
    ),
    "ASM021": Rule(
        "Alembic script template without `import sqlmodel`",
        "add `import sqlmodel` to script.py.mako",
        "migrations.md#setup",
    ),
    "ASM022": Rule(
        "sync `with` on an async engine in env.py",
        "async with engine.connect() as c: await c.run_sync(...)",
        "migrations.md#envpy",
    ),
    "ASM023": Rule(
        "httpx.AsyncClient(app=...) was removed in httpx 0.28",
        "AsyncClient(transport=ASGITransport(app=app), base_url=...)",
        "fastapi-integration.md#errors-people-hit",
    ),
    "ASM024": Rule(
        "event_loop fixture override (removed in pytest-asyncio 1.0)",
        "asyncio_default_fixture_loop_scope / loop_scope=",
        "testing.md#pytest-asyncio",
    ),
    "ASM025": Rule(
        "sqlalchemy.select passed to SQLModel's session.exec",
        "from sqlmodel import select",
        "async-operations.md#queries",
    ),
    "ASM026": Rule(
        "engine created at import and never disposed",
        "await engine.dispose() at shutdown (in the lifespan), or create the engine there",
        "fastapi-integration.md#app-factory-and-lifespan",
    ),
}
ENGINE_FACTORIES = ("create_async_engine", "async_engine_from_config")

ASYNC_SESSION_METHODS = {
    "commit",
    "flush",
    "refresh",
    "rollback",
    "close",
    "exec",
    "execute",
    "delete",
    "get",
    "get_one",
    "merge",
    "scalar",
    "scalars",
    "stream",
}
ONCE_CALLS = {"uuid4", "uuid1", "now", "utcnow", "today"}
PYDANTIC_V1 = {"parse_obj", "from_orm", "parse_raw", "update_forward_refs"}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    col: int
    rule: str
    message: str
    fix: str
    see: str

    def text(self) -> str:
        return (
            f"{self.path}:{self.line}:{self.col} {self.rule} {self.message} "
            f"(fix: {self.fix}; see references/{self.see})"
        )


def call_name(node: ast.AST) -> str:
    """'create_engine' for create_engine(...), 'exec' for session.exec(...)."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    return ""


def keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def is_constant_false(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def has_interpolation(node: ast.expr, *, identifiers_ok: bool = False) -> bool:
    """A value formatted into SQL. With identifiers_ok, an f-string whose every value stands
    inside identifier quotes ("{name}" or `{name}`: a table or database name) doesn't count."""
    if isinstance(node, ast.JoinedStr):
        values = node.values
        formatted = [i for i, v in enumerate(values) if isinstance(v, ast.FormattedValue)]
        if identifiers_ok and formatted and all(quoted_identifier(values, i) for i in formatted):
            return False
        return bool(formatted)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
        return True
    return isinstance(node, ast.Call) and call_name(node) == "format"


def quoted_identifier(values: list[ast.expr], index: int) -> bool:
    def text_at(i: int) -> str:
        value = values[i] if 0 <= i < len(values) else None
        return str(value.value) if isinstance(value, ast.Constant) else ""

    before, after = text_at(index - 1), text_at(index + 1)
    return any(before.endswith(q) and after.startswith(q) for q in ('"', "`"))


class Checker(ast.NodeVisitor):
    def __init__(self, path: str, tree: ast.Module, table_models: set[str]) -> None:
        self.path = path
        self.tree = tree
        self.table_models = table_models
        self.findings: list[Finding] = []
        self.imported: dict[str, str] = {}  # local name -> module
        self.async_depth = 0
        self.function_scoped: set[str] = set()
        self.async_engines: set[str] = set()

    def add(self, node: ast.AST, rule: str) -> None:
        spec = RULES[rule]
        line, col = getattr(node, "lineno", 1), getattr(node, "col_offset", 0) + 1
        self.findings.append(Finding(self.path, line, col, rule, spec.message, spec.fix, spec.see))

    # ------------------------------------------------------------------ module facts

    def prepare(self) -> None:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    self.imported[alias.asname or alias.name] = node.module
            if isinstance(node, ast.Call) and call_name(node) == "Depends" and node.args:
                scope = keyword(node, "scope")
                if isinstance(scope, ast.Constant) and scope.value == "function":
                    self.function_scoped.add(dotted(node.args[0]))
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Call)
                and call_name(node.value) in ("create_async_engine", "async_engine_from_config")
            ):
                self.async_engines |= {dotted(t) for t in node.targets}

    def module_level_engines(self) -> Iterator[tuple[ast.Call, set[str]]]:
        """Engine factory calls run at import, with the names their result is assigned to."""
        pending: list[ast.AST] = [self.tree]
        while pending:
            node = pending.pop()
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                    continue  # runs when called, not at import
                pending.append(child)
                if isinstance(child, ast.Call) and call_name(child) in ENGINE_FACTORIES:
                    names: set[str] = set()
                    if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is child:
                        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                        names = {dotted(t).split(".")[-1] for t in targets} - {""}
                    yield child, names

    def from_module(self, name: str, *modules: str) -> bool:
        module = self.imported.get(name, "")
        return any(module == m or module.startswith(m + ".") for m in modules)

    # ------------------------------------------------------------------ visitors

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self.check_function(node)
        self.async_depth += 1
        self.generic_visit(node)
        self.async_depth -= 1

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.check_function(node)
        depth, self.async_depth = self.async_depth, 0  # a nested sync def is sync code
        self.generic_visit(node)
        self.async_depth = depth

    def check_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        decorators = [dotted(d.func if isinstance(d, ast.Call) else d) for d in node.decorator_list]
        if node.name == "event_loop" and any(d.endswith("fixture") for d in decorators):
            self.add(node, "ASM024")
        if any(d.endswith(".on_event") for d in decorators):
            self.add(node, "ASM020")
        if any(d.split(".")[-1] in ("post", "put", "patch") for d in decorators):
            for argument in node.args.args:
                if isinstance(argument.annotation, ast.Name) and (
                    argument.annotation.id in self.table_models
                ):
                    self.add(argument, "ASM012")
        body = list(ast.walk(node))
        if isinstance(node, ast.AsyncFunctionDef) and any(isinstance(n, ast.Yield) for n in body):
            commits = any(
                isinstance(n, ast.Call) and call_name(n) in ("commit", "begin") for n in body
            )
            if (
                commits
                and node.name not in self.function_scoped
                and any(
                    isinstance(n, ast.Call)
                    and call_name(n) == "Depends"
                    and n.args
                    and dotted(n.args[0]) == node.name
                    for n in ast.walk(self.tree)
                )
            ):
                self.add(node, "ASM018")
        if (
            "lifespan" in node.name
            and any(
                isinstance(n, ast.Call) and call_name(n) in ("create_async_engine", "create_engine")
                for n in body
            )
            and not any(isinstance(n, ast.Call) and call_name(n) == "dispose" for n in body)
        ):
            self.add(node, "ASM019")

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        is_table = any(
            k.arg == "table" and isinstance(k.value, ast.Constant) and k.value.value
            for k in node.keywords
        )
        pydantic = any(dotted(b).split(".")[-1] in ("SQLModel", "BaseModel") for b in node.bases)
        for item in node.body:
            if isinstance(item, ast.ClassDef) and item.name == "Config" and (pydantic or is_table):
                self.add(item, "ASM013")
            if is_table and isinstance(item, ast.AnnAssign):
                self.check_column(item)
        self.generic_visit(node)

    def check_column(self, item: ast.AnnAssign) -> None:
        annotation = ast.unparse(item.annotation)
        field = item.value if isinstance(item.value, ast.Call) else None
        if field is not None and call_name(field) != "Field":
            return  # Relationship(...) etc.
        handled = field is not None and any(
            keyword(field, k) is not None for k in ("sa_type", "sa_column")
        )
        base = annotation.replace(" ", "").replace("|None", "").replace("Optional[", "")
        if base.rstrip("]") == "datetime" and not handled:
            self.add(item, "ASM010")
        if (
            base.rstrip("]") == "str"
            and not handled
            and (field is None or keyword(field, "max_length") is None)
            and not (field is not None and keyword(field, "primary_key") is not None)
        ):
            self.add(item, "ASM011")

    def visit_Await(self, node: ast.Await) -> None:
        value = node.value
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute):
            inner = value.func.value
            if isinstance(inner, ast.Call) and call_name(inner) in ("exec", "execute", "scalars"):
                self.add(node, "ASM004")
        self.generic_visit(node)

    def visit_Expr(self, node: ast.Expr) -> None:
        call = node.value
        if self.async_depth and isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute):
            receiver = dotted(call.func.value).lower()
            if "session" in receiver and call.func.attr in ASYNC_SESSION_METHODS:
                self.add(node, "ASM005")
        self.generic_visit(node)

    def visit_With(self, node: ast.With) -> None:
        if Path(self.path).name == "env.py":
            for item in node.items:
                expr = item.context_expr
                if (
                    isinstance(expr, ast.Call)
                    and call_name(expr) in ("connect", "begin")
                    and (
                        isinstance(expr.func, ast.Attribute)
                        and dotted(expr.func.value) in self.async_engines
                    )
                ):
                    self.add(node, "ASM022")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = call_name(node)
        qualified = dotted(node.func)
        if (
            self.async_depth
            and name == "create_engine"
            and self.from_module("create_engine", "sqlalchemy", "sqlmodel")
        ):
            self.add(node, "ASM001")
        if (
            self.async_depth
            and name in ("Session", "sessionmaker")
            and self.from_module(name, "sqlalchemy.orm", "sqlmodel")
        ):
            self.add(node, "ASM002")
        if (
            name == "async_sessionmaker"
            and not is_constant_false(keyword(node, "expire_on_commit"))
            and not any(k.arg is None for k in node.keywords)  # **options may hold it
        ):
            self.add(node, "ASM003")
        if name in ("Relationship", "relationship") and self.from_module(
            name, "sqlmodel", "sqlalchemy.orm"
        ):
            self.check_relationship(node)
        if (
            qualified in ("event.listen", "event.listens_for", "listen", "listens_for")
            and node.args
        ):
            target = dotted(node.args[0])
            last = target.split(".")[-1]
            if "engine" in last.lower() and last not in ("sync_engine",) and not last[:1].isupper():
                self.add(node, "ASM007")
        for key in ("default",):
            value = keyword(node, key)
            if (
                name in ("Field", "Column", "mapped_column")
                and isinstance(value, ast.Call)
                and (call_name(value) in ONCE_CALLS)
            ):
                self.add(value, "ASM008")
        if qualified.endswith("datetime.utcnow") or (
            qualified == "utcnow" and self.from_module("utcnow", "datetime")
        ):
            self.add(node, "ASM009")
        if isinstance(node.func, ast.Attribute) and (
            (name == "dict" and not node.args) or name in PYDANTIC_V1
        ):
            self.add(node, "ASM013")
        if any(k.arg == "orm_mode" for k in node.keywords):
            self.add(node, "ASM013")
        if name == "text" and node.args and has_interpolation(node.args[0], identifiers_ok=True):
            self.add(node, "ASM014")
        if (
            name in ("like", "ilike")
            and node.args
            and has_interpolation(node.args[0])
            and keyword(node, "escape") is None  # escape=: the value was escaped on purpose
        ):
            self.add(node, "ASM015")
        if name == "order_by":
            for argument in node.args:
                if (
                    isinstance(argument, ast.Call)
                    and call_name(argument) == "text"
                    and (argument.args and not isinstance(argument.args[0], ast.Constant))
                ):
                    self.add(argument, "ASM016")
        if name == "gather":
            self.check_gather(node)
        if qualified.endswith("AsyncClient") and keyword(node, "app") is not None:
            self.add(node, "ASM023")
        if (
            name == "exec"
            and node.args
            and isinstance(node.args[0], ast.Call)
            and (call_name(node.args[0]) == "select" and self.from_module("select", "sqlalchemy"))
        ):
            self.add(node, "ASM025")
        self.generic_visit(node)

    def check_relationship(self, node: ast.Call) -> None:
        if keyword(node, "lazy") is not None or keyword(node, "sa_relationship") is not None:
            return
        kwargs = keyword(node, "sa_relationship_kwargs")
        if isinstance(kwargs, ast.Dict) and any(
            isinstance(k, ast.Constant) and k.value == "lazy" for k in kwargs.keys
        ):
            return
        if isinstance(kwargs, ast.Name):  # a shared dict: can't tell, trust it
            return
        self.add(node, "ASM006")

    def check_gather(self, node: ast.Call) -> None:
        sessions: list[str] = []
        for argument in node.args:
            calls = [argument]
            if isinstance(argument, ast.Starred) and isinstance(argument.value, ast.GeneratorExp):
                calls = [argument.value.elt]
            for call in calls:
                if isinstance(call, ast.Call):
                    receivers = [dotted(a) for a in call.args]
                    if isinstance(call.func, ast.Attribute):
                        receivers.append(dotted(call.func.value))
                    sessions += [
                        r
                        for r in receivers
                        if "session" in r.lower() and "factory" not in r.lower()
                    ]
        generator = any(isinstance(a, ast.Starred) for a in node.args)
        if sessions and (generator or len(sessions) != len(set(sessions))):
            self.add(node, "ASM017")


def table_models_in(trees: list[ast.Module]) -> set[str]:
    names = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                k.arg == "table" and isinstance(k.value, ast.Constant) and k.value.value
                for k in node.keywords
            ):
                names.add(node.name)
    return names


def python_files(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                wanted = child.suffix == ".py" or child.name == "script.py.mako"
                hidden = any(p.startswith(".") or p == "__pycache__" for p in child.parts)
                if wanted and not hidden:
                    yield child
        else:
            yield path


# A MySQL/MariaDB project declares a driver or a URL in its project files. Python code doesn't
# tell: code copied from a multi-backend example names mysql in a PostgreSQL-only project.
MYSQL_DRIVER = re.compile(r"aiomysql|asyncmy|pymysql|mysqlclient|(mysql|mariadb)\+", re.IGNORECASE)
MYSQL_URL = re.compile(r"(mysql|mariadb)(\+\w+)?://")
PROJECT_FILES = ("pyproject.toml", "setup.cfg", "setup.py", ".env", "alembic.ini")
PROJECT_GLOBS = ("requirements*.txt", "docker-compose*.y*ml", "compose*.y*ml")


def has_mysql_url(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and MYSQL_URL.match(node.value) is not None
        for node in ast.walk(tree)
    )


def declares_mysql(paths: list[Path]) -> bool:
    """A project file in a checked directory or above it names a MySQL/MariaDB driver or URL."""
    seen: set[Path] = set()
    for start in paths:
        for directory in [start.resolve(), *start.resolve().parents]:
            if directory in seen or not directory.is_dir():
                continue
            seen.add(directory)
            files = [directory / name for name in PROJECT_FILES]
            files += [f for pattern in PROJECT_GLOBS for f in directory.glob(pattern)]
            for file in files:
                try:
                    if MYSQL_DRIVER.search(file.read_text(encoding="utf-8", errors="replace")):
                        return True
                except OSError:
                    continue
    return False


def disposed_names(tree: ast.Module) -> set[str]:
    """'engine' for engine.dispose(), db.engine.dispose() or push_async_callback(engine.dispose)."""
    return {
        dotted(node.value).split(".")[-1] or "?"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr == "dispose"
    }


def check(paths: list[Path], errors: list[str] | None = None) -> list[Finding]:
    """Findings in the files under paths; files that can't be read or parsed go to errors."""
    errors = [] if errors is None else errors
    sources: dict[Path, str] = {}
    for path in python_files(paths):
        try:
            sources[path] = path.read_text(encoding="utf-8", errors="replace")
        except OSError as error:
            errors.append(f"{path}: cannot read: {error.strerror or error}")
    trees: dict[Path, ast.Module] = {}
    findings: list[Finding] = []
    for path, source in sources.items():
        if path.name == "script.py.mako":
            if not re.search(r"^import sqlmodel\b", source, re.MULTILINE):
                spec = RULES["ASM021"]
                findings.append(
                    Finding(str(path), 1, 1, "ASM021", spec.message, spec.fix, spec.see)
                )
            continue
        try:
            trees[path] = ast.parse(source, filename=str(path))
        except SyntaxError as error:
            errors.append(f"{path}:{error.lineno}: cannot parse: {error.msg}")
        except ValueError as error:  # e.g. a NUL byte (Python 3.11)
            errors.append(f"{path}: cannot parse: {error}")
    tables = table_models_in(list(trees.values()))
    disposed = set().union(*map(disposed_names, trees.values()))  # anywhere in the checked files
    # ASM010 matters on MySQL/MariaDB only: a project file or a URL in the code says so.
    mysql = declares_mysql(paths) or any(map(has_mysql_url, trees.values()))
    for path, tree in trees.items():
        checker = Checker(str(path), tree, tables)
        checker.prepare()
        checker.visit(tree)
        here = disposed_names(tree)
        for call, names in checker.module_level_engines():
            if not (names & disposed if names else here):  # unnamed: any dispose in this file
                checker.add(call, "ASM026")
        lines = sources[path].splitlines()
        for finding in checker.findings:
            if finding.rule == "ASM010" and not mysql:
                continue
            line = lines[finding.line - 1] if 0 < finding.line <= len(lines) else ""
            match = SUPPRESS.search(line)
            if match and finding.rule in {r.strip() for r in match.group(1).split(",")}:
                continue
            findings.append(finding)
    return sorted(findings, key=lambda f: (f.path, f.line, f.col, f.rule))


def rule_ids(value: str) -> set[str]:
    ids = {v.strip().upper() for v in value.split(",") if v.strip()}
    unknown = ids - set(RULES)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown rule ids: {', '.join(sorted(unknown))}")
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="check_async_sqlmodel.py",
        description="Static checks for async SQLModel/SQLAlchemy, FastAPI and Alembic code.",
        epilog="exit status: 0 no findings, 1 findings, 2 incomplete (a usage error, or a file "
        "that can't be read or parsed; named on stderr). rules: "
        + "; ".join(f"{k} {v.message}" for k, v in RULES.items()),
    )
    parser.add_argument("paths", nargs="+", type=Path, help="files or folders to check")
    parser.add_argument("--format", choices=["text", "json"], default="text")
    parser.add_argument("--select", type=rule_ids, help="only these rule ids (comma-separated)")
    parser.add_argument("--ignore", type=rule_ids, default=set(), help="skip these rule ids")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        parser.error(f"no such file or folder: {', '.join(missing)}")
    errors: list[str] = []
    findings = [
        f
        for f in check(args.paths, errors)
        if (args.select is None or f.rule in args.select) and f.rule not in args.ignore
    ]
    for error in errors:
        print(error, file=sys.stderr)
    shown = findings[:MAX_FINDINGS]
    if args.format == "json":
        print(json.dumps([asdict(f) for f in shown], indent=2))
    else:
        for finding in shown:
            print(finding.text())
        if len(findings) > len(shown):
            print(f"... and {len(findings) - len(shown)} more findings")
    if errors:
        return 2  # incomplete: a file was not checked
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())

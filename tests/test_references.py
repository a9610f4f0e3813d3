"""The skill itself: SKILL.md and references/*.md are valid, linked and copied from tested code."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import pytest
from skills_ref.parser import parse_frontmatter  # type: ignore[import-untyped]
from skills_ref.validator import validate  # type: ignore[import-untyped]

from tools.snippets import fences, scan

ROOT = Path(__file__).parents[1]
SKILL = ROOT / "SKILL.md"
REFERENCES = sorted((ROOT / "references").glob("*.md"))
DOCS = [SKILL, *REFERENCES]

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'(][^)]*)?\)")
INLINE_CODE = re.compile(r"(`+).+?\1")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")


def unfenced_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the lines outside fenced code blocks."""
    lines = path.read_text(encoding="utf-8").splitlines()
    fenced = {i for f in fences(lines) for i in range(f.start, f.end + 1)}
    return [(i + 1, line) for i, line in enumerate(lines) if i not in fenced]


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """Like unfenced_lines, with inline code removed (`d[k](x)` is not a link)."""
    return [(n, INLINE_CODE.sub("", line)) for n, line in unfenced_lines(path)]


def github_anchors(path: Path) -> set[str]:
    """Anchors GitHub generates for the headings of a markdown file."""
    anchors: set[str] = set()
    for _, line in unfenced_lines(path):
        if (m := HEADING.match(line)) is None:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m[1])  # [text](url) -> text
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        anchor, n = slug, 0
        while anchor in anchors:
            n += 1
            anchor = f"{slug}-{n}"
        anchors.add(anchor)
    return anchors


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_code_blocks_are_copies_of_tested_regions() -> None:
    report = scan(ROOT)
    assert not report.problems, "\n".join(map(str, report.problems))
    assert report.blocks > 0, "no python blocks found: is the checker looking at the docs?"


def test_skill_passes_skills_ref_validation(tmp_path: Path) -> None:
    skill_dir = tmp_path / "async-sqlmodel"  # the validator wants the directory named as the skill
    skill_dir.mkdir()
    shutil.copy(SKILL, skill_dir / "SKILL.md")
    shutil.copytree(ROOT / "references", skill_dir / "references")
    assert validate(skill_dir) == []


def test_frontmatter() -> None:
    metadata, _ = parse_frontmatter(SKILL.read_text(encoding="utf-8"))
    assert metadata["name"] == "async-sqlmodel"
    description = metadata["description"]
    assert isinstance(description, str)
    assert 0 < len(description) <= 1024
    assert "<" not in description
    assert ">" not in description


def test_skill_body_is_at_most_500_lines() -> None:
    _, body = parse_frontmatter(SKILL.read_text(encoding="utf-8"))
    assert len(body.splitlines()) <= 500


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_relative_links_resolve(doc: Path) -> None:
    broken: list[str] = []
    for number, line in prose_lines(doc):
        for target in LINK.findall(line):
            if target.startswith("#") or re.match(r"^(https?|mailto):", target):
                continue
            path = unquote(target.split("#", 1)[0])
            if not (doc.parent / path).exists():
                broken.append(f"{rel(doc)}:{number}: {target}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def table_of_contents(doc: Path) -> list[str] | None:
    """The #anchor links listed under a 'Contents' heading in the first 30 lines, if any."""
    lines = [line for number, line in prose_lines(doc) if number <= 30]
    for i, line in enumerate(lines):
        if (m := HEADING.match(line)) and "contents" in m[1].lower():
            items: list[str] = []
            for item in lines[i + 1 :]:
                if LIST_ITEM.match(item):
                    items.extend(t for t in LINK.findall(item) if t.startswith("#"))
                elif item.strip():
                    break
            return items
    return None


LONG_REFERENCES = [r for r in REFERENCES if len(r.read_text(encoding="utf-8").splitlines()) > 100]


@pytest.mark.parametrize("doc", LONG_REFERENCES, ids=rel)
def test_long_references_start_with_a_table_of_contents(doc: Path) -> None:
    toc = table_of_contents(doc)
    assert toc, f"{rel(doc)}: over 100 lines, needs a '## Contents' list of #links in 30 lines"
    missing = sorted(set(toc) - {f"#{a}" for a in github_anchors(doc)})
    assert not missing, f"{rel(doc)}: contents links without a matching heading: {missing}"


TROUBLESHOOTING = ROOT / "references" / "troubleshooting.md"
TEST_REFERENCE = re.compile(r"^Test: `(?P<path>tests/[\w/]+\.py)::(?P<name>\w+)`$", re.MULTILINE)


def test_every_troubleshooting_entry_names_a_test_that_exists() -> None:
    text = TROUBLESHOOTING.read_text(encoding="utf-8")
    entries = text.count("\n**")
    references = TEST_REFERENCE.findall(text)
    assert entries >= 30
    assert len(references) == entries, "every entry ends with its Test: line"
    missing = []
    for path, name in references:
        source = (ROOT / path).read_text(encoding="utf-8") if (ROOT / path).exists() else ""
        if not re.search(rf"^(async )?def {name}\(", source, re.MULTILINE):
            missing.append(f"{path}::{name}")
    assert not missing, missing


def test_tests_named_in_the_references_exist() -> None:
    defined = set()
    for path in (ROOT / "tests").glob("*.py"):
        defined |= set(re.findall(r"^(?:async )?def (test_\w+)\(", path.read_text(), re.MULTILINE))
    named = set()
    for path in [SKILL, *REFERENCES]:
        named |= set(re.findall(r"`(test_\w+)`", path.read_text(encoding="utf-8")))
    assert named, "the references name the tests that prove them"
    assert not named - defined, sorted(named - defined)


def test_skill_md_is_a_short_self_sufficient_guide() -> None:
    _, body = parse_frontmatter(SKILL.read_text(encoding="utf-8"))
    assert len(body.splitlines()) <= 250
    assert "http://" not in body
    assert "https://" not in body
    assert "README" not in body  # installers drop README.md
    for reference in REFERENCES:  # every reference is reachable from the router
        assert f"(references/{reference.name})" in body, reference.name


FASTAPI_SCOPE_FLOOR = (0, 121)  # Depends(scope=...): TypeError on 0.120


def test_the_stated_fastapi_floor_has_depends_scope() -> None:
    """Every FastAPI version the skill states is the floor for Depends(scope=...), 0.121, and
    pyproject requires at least that."""
    stated = re.compile(r"FastAPI\s*(?:≥|>=)?\s*(\d+)\.(\d+)\+?")
    found = {}
    for path in DOCS:
        for match in stated.finditer(path.read_text(encoding="utf-8")):
            found[f"{rel(path)}: {match[0]}"] = (int(match[1]), int(match[2]))
    assert len(found) >= 2, found  # SKILL.md's compatibility and its Versions note
    assert {floor for floor in found.values()} == {FASTAPI_SCOPE_FLOOR}, found
    required = re.search(r'"fastapi>=(\d+)\.(\d+)', (ROOT / "pyproject.toml").read_text())
    assert required is not None
    assert (int(required[1]), int(required[2])) >= FASTAPI_SCOPE_FLOOR


# ---------------------------------------------------------------- the install line

COPIED_CODE = [
    *sorted((ROOT / "examples" / "app").rglob("*.py")),
    *sorted((ROOT / "examples" / "servicebase").rglob("*.py")),
    ROOT / "examples" / "testing.py",
]
DRIVERS = {"aiosqlite", "asyncpg", "aiomysql"}  # "one driver": any of them is named
OPTIONAL = {"opentelemetry"}  # imported inside a function, named on the "Tracing" line


def imported_top_level_modules(path: Path) -> set[str]:
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def install_lines() -> list[str]:
    text = SKILL.read_text(encoding="utf-8")
    return re.findall(r"^pip install (.*?)(?:\s+#.*)?$", text, flags=re.MULTILINE)


def named_distributions() -> set[str]:
    """Names on SKILL.md's pip lines, plus what those distributions require directly."""
    from importlib.metadata import PackageNotFoundError, requires

    from packaging.requirements import Requirement

    named: set[str] = set()
    for line in install_lines():
        for word in line.split():
            requirement = Requirement(word.strip("\"'"))
            named.add(requirement.name.lower().replace("_", "-"))
    covered = set(named)
    for name in named:
        try:
            requirements = requires(name) or []
        except PackageNotFoundError:
            continue
        for spec in requirements:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": "asyncio"}):
                covered.add(req.name.lower().replace("_", "-"))
    return covered


def test_skill_install_line_covers_every_import_of_the_copied_code() -> None:
    import sys
    from importlib.metadata import packages_distributions

    assert len(install_lines()) == 2, "one install line for the app, one for the tests"
    modules = set().union(*map(imported_top_level_modules, COPIED_CODE))
    third_party = modules - set(sys.stdlib_module_names) - {"examples"} - DRIVERS - OPTIONAL
    distributions = packages_distributions()
    covered = named_distributions()
    missing = {
        module: distributions.get(module, ["?"])
        for module in sorted(third_party)
        if not {d.lower().replace("_", "-") for d in distributions.get(module, [])} & covered
    }
    assert not missing, f"SKILL.md's install lines don't bring: {missing}"
    pip_lines = [line for line in SKILL.read_text(encoding="utf-8").splitlines() if "pip" in line]
    assert all(driver in pip_lines[0] for driver in DRIVERS), pip_lines[0]


# ---------------------------------------------------------------- recipes: what they cost to read


def test_every_recipe_names_files_that_exist_and_stays_within_its_budget() -> None:
    from tools.reading_cost import BUDGET, costs, recipes

    found = recipes(ROOT)
    assert len(found) >= 4, "SKILL.md's Recipes list was not parsed"
    assert all(r.read for r in found), [r.name for r in found if not r.read]
    over = {
        c.recipe.name: c.total
        for c in costs(ROOT, lambda text: len(text) // 4)  # text_of raises on a missing file
        if c.total > BUDGET
    }
    assert not over, over

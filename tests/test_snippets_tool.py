"""tools.snippets: python blocks in the docs must be verbatim copies of marked source regions."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tools.snippets import Problem, check, scan, sync

REPO = Path(__file__).parents[1]

SOURCE = """\
import os


# --8<-- [start:outer]
def outer() -> int:
    # --8<-- [start:inner]
    x = 1
    # --8<-- [end:inner]
    return x
# --8<-- [end:outer]


class C:
    # --8<-- [start:method]
    def method(self) -> None:
        pass  # indented region, dedented in the docs
    # --8<-- [end:method]
"""

GUIDE = """\
# Guide

<!-- snippet: src/app.py#outer -->
```python
def outer() -> int:
    x = 1
    return x
```

Nested region, fenced with tildes and an alias:

<!-- snippet: src/app.py#inner -->
~~~py
x = 1
~~~

1. A list item with an indented block:

   <!-- snippet: src/app.py#method -->
   ```python
   def method(self) -> None:
       pass  # indented region, dedented in the docs
   ```

Other fences are ignored, including lookalikes inside them:

````markdown
<!-- snippet: src/app.py#nope -->
```python
not checked
```
````

```bash
# --8<-- [start:fake]
<!-- snippet: missing.py#x -->
```

```toml
key = "value"
```
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def line_of(path: Path, needle: str, occurrence: int = 1) -> int:
    """1-based number of the line containing `needle` (its n-th occurrence)."""
    hits = [n for n, line in enumerate(path.read_text().splitlines(), 1) if needle in line]
    return hits[occurrence - 1]


def kinds(problems: list[Problem]) -> list[tuple[str, int, str]]:
    return [(str(p.path), p.line, p.kind) for p in problems]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    write(tmp_path / "src" / "app.py", SOURCE)
    write(tmp_path / "references" / "guide.md", GUIDE)
    return tmp_path


def test_clean_tree_passes(tree: Path) -> None:
    report = scan(tree)
    assert report.problems == []
    assert report.blocks == 3  # the python blocks inside ````markdown and ```bash don't count


def test_skill_md_is_checked_by_default(tree: Path) -> None:
    skill = write(tree / "SKILL.md", "# Skill\n\n```python\nprint()\n```\n")
    assert kinds(check(tree)) == [("SKILL.md", line_of(skill, "```python"), "unmarked-fence")]


def test_changed_region_is_reported_with_a_diff(tree: Path) -> None:
    source = tree / "src" / "app.py"
    source.write_text(SOURCE.replace("x = 1", "x = 2"))
    guide = tree / "references" / "guide.md"

    problems = check(tree)

    assert kinds(problems) == [
        ("references/guide.md", line_of(guide, "```python"), "changed"),  # outer
        ("references/guide.md", line_of(guide, "~~~py"), "changed"),  # inner
    ]
    assert "src/app.py#inner" in problems[1].message
    assert "-x = 1" in problems[1].message
    assert "+x = 2" in problems[1].message


def test_trailing_whitespace_and_surrounding_blank_lines_are_ignored(tree: Path) -> None:
    guide = tree / "references" / "guide.md"
    guide.write_text(guide.read_text().replace("~~~py\nx = 1\n", "~~~py\n\nx = 1   \n\n"))
    assert check(tree) == []


def test_missing_region(tree: Path) -> None:
    guide = tree / "references" / "guide.md"
    guide.write_text(guide.read_text().replace("src/app.py#inner", "src/app.py#gone", 1))

    problems = check(tree)

    assert kinds(problems) == [("references/guide.md", line_of(guide, "#gone"), "missing-region")]
    assert "region 'gone' not found in src/app.py" in problems[0].message


def test_missing_file(tree: Path) -> None:
    guide = tree / "references" / "guide.md"
    guide.write_text(guide.read_text().replace("src/app.py#inner", "src/gone.py#inner", 1))

    problems = check(tree)

    assert kinds(problems) == [("references/guide.md", line_of(guide, "gone.py"), "missing-file")]
    assert "src/gone.py" in problems[0].message


@pytest.mark.parametrize("lang", ["python", "py", "Python"])
def test_unmarked_python_fence(tree: Path, lang: str) -> None:
    doc = write(tree / "references" / "doc.md", f"# Doc\n\n```{lang}\nx = 1\n```\n")
    assert kinds(check(tree)) == [("references/doc.md", 3, "unmarked-fence")]
    assert "unmarked python fence" in str(check(tree)[0])
    assert line_of(doc, f"```{lang}") == 3


def test_marker_must_be_on_the_line_right_before_the_fence(tree: Path) -> None:
    write(
        tree / "references" / "doc.md",
        """\
        <!-- snippet: src/app.py#inner -->

        ```python
        x = 1
        ```
        """,
    )
    assert kinds(check(tree)) == [
        ("references/doc.md", 1, "dangling-marker"),
        ("references/doc.md", 3, "unmarked-fence"),
    ]


@pytest.mark.parametrize(
    "after",
    [
        pytest.param("```bash\necho hi\n```\n", id="bash-fence"),
        pytest.param("Some text.\n", id="text"),
        pytest.param("", id="end-of-file"),
    ],
)
def test_marker_pointing_nowhere(tree: Path, after: str) -> None:
    write(tree / "references" / "doc.md", "# Doc\n\n<!-- snippet: src/app.py#inner -->\n" + after)

    problems = check(tree)

    assert kinds(problems) == [("references/doc.md", 3, "dangling-marker")]
    assert "marker points nowhere" in problems[0].message


def test_malformed_marker(tree: Path) -> None:
    write(tree / "references" / "doc.md", "<!-- snippet: src/app.py -->\n```python\nx = 1\n```\n")
    assert kinds(check(tree)) == [
        ("references/doc.md", 1, "bad-marker"),
        ("references/doc.md", 2, "unmarked-fence"),
    ]


def test_unclosed_python_fence(tree: Path) -> None:
    write(tree / "references" / "doc.md", "<!-- snippet: src/app.py#inner -->\n```python\nx = 1\n")
    assert kinds(check(tree)) == [("references/doc.md", 2, "unclosed-fence")]


def test_unterminated_region(tree: Path) -> None:
    source = tree / "src" / "app.py"
    source.write_text(SOURCE.replace("    # --8<-- [end:inner]\n", ""))

    problems = check(tree)

    # Reported once, at the source; the blocks using it are not also reported as missing.
    assert kinds(problems) == [
        ("src/app.py", line_of(source, "[start:inner]"), "unterminated-region")
    ]
    assert "no end marker" in problems[0].message


def test_duplicate_region_and_stray_end(tree: Path) -> None:
    source = tree / "src" / "app.py"
    source.write_text(
        SOURCE + "\n# --8<-- [start:outer]\nagain = 1\n# --8<-- [end:outer]\n# --8<-- [end:zzz]\n"
    )

    problems = check(tree)

    assert kinds(problems) == [
        ("src/app.py", line_of(source, "[start:outer]", occurrence=2), "duplicate-region"),
        ("src/app.py", line_of(source, "[end:zzz]"), "stray-end"),
    ]
    assert "defined twice" in problems[0].message


def test_sync_fixes_a_changed_block_and_leaves_other_files_alone(tree: Path) -> None:
    write(tree / "src" / "other.py", "# --8<-- [start:y]\ny = 1\n# --8<-- [end:y]\n")
    other = write(
        tree / "references" / "other.md",
        "<!-- snippet: src/other.py#y -->\n```python\ny = 1\n```\n",
    )
    os.utime(other, ns=(1_000_000_000, 1_000_000_000))
    other_text = other.read_text()
    guide = tree / "references" / "guide.md"
    (tree / "src" / "app.py").write_text(SOURCE.replace("pass  #", "return None  #"))
    assert kinds(check(tree)) == [("references/guide.md", line_of(guide, "#method") + 1, "changed")]

    assert sync(tree) == []

    assert check(tree) == []
    assert (
        "   <!-- snippet: src/app.py#method -->\n   ```python\n   def method(self) -> None:\n"
        in guide.read_text()
    )
    assert "       return None  # indented region" in guide.read_text()  # keeps the list indent
    assert other.read_text() == other_text
    assert other.stat().st_mtime_ns == 1_000_000_000
    os.utime(guide, ns=(2_000_000_000, 2_000_000_000))
    assert scan(tree, fix=True).synced == []  # idempotent: nothing more to write
    assert guide.stat().st_mtime_ns == 2_000_000_000


def test_sync_still_reports_what_it_cannot_fix(tree: Path) -> None:
    guide = tree / "references" / "guide.md"
    guide.write_text(guide.read_text().replace("src/app.py#inner", "src/app.py#gone", 1))
    (tree / "src" / "app.py").write_text(SOURCE.replace("return x", "return -x"))

    report = scan(tree, fix=True)

    assert report.synced == [
        f"references/guide.md:{line_of(guide, '```python')} <- src/app.py#outer"
    ]
    assert kinds(report.problems) == [
        ("references/guide.md", line_of(guide, "#gone"), "missing-region")
    ]


def test_explicit_files_limit_the_check(tree: Path) -> None:
    write(tree / "references" / "bad.md", "```python\nx\n```\n")
    assert check(tree, [Path("references/guide.md")]) == []
    assert kinds(check(tree, [Path("references/nope.md")])) == [
        ("references/nope.md", 1, "missing-file")
    ]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.snippets", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )


def test_cli_exit_codes(tree: Path) -> None:
    ok = run_cli("check", "--root", str(tree))
    assert (ok.returncode, ok.stderr) == (0, "")
    assert ok.stdout.startswith("OK: 3 python block(s)")

    (tree / "src" / "app.py").write_text(SOURCE.replace("x = 1", "x = 2"))
    guide = tree / "references" / "guide.md"
    bad = run_cli("check", "--root", str(tree))
    assert bad.returncode == 1
    assert f"references/guide.md:{line_of(guide, '~~~py')}: block differs" in bad.stdout

    fixed = run_cli("sync", "--root", str(tree))
    assert fixed.returncode == 0
    assert "synced references/guide.md:" in fixed.stdout
    assert run_cli("check", "--root", str(tree)).returncode == 0

    write(tree / "references" / "bad.md", "```python\nx\n```\n")
    unfixable = run_cli("sync", "--root", str(tree))
    assert unfixable.returncode == 1
    assert "references/bad.md:1: unmarked python fence" in unfixable.stdout

"""Keep every Python block in SKILL.md and references/*.md a verbatim copy of tested code.

A block names the source region it copies on the line right before its opening fence:

    <!-- snippet: examples/app/db.py#engine -->
    ```python
    ...
    ```

and the source marks the region pymdownx-snippets style, at any indentation:

    # --8<-- [start:engine]
    ...
    # --8<-- [end:engine]

Region text drops nested `# --8<--` marker lines and is dedented. `check` reports drift and
broken markers; `sync` rewrites drifted blocks from their regions and reports the rest.

    python -m tools.snippets check|sync [--root DIR] [FILES...]
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Kind = Literal[
    "changed",  # block differs from its region
    "missing-region",  # region name not defined in the source file
    "missing-file",  # source (or given markdown) file does not exist
    "unmarked-fence",  # python fence without a marker on the line before
    "dangling-marker",  # marker not immediately followed by a python fence
    "bad-marker",  # line looks like a marker but does not parse
    "unclosed-fence",  # python fence never closed
    "unterminated-region",  # start marker without end marker
    "duplicate-region",  # region name started twice in one file
    "stray-end",  # end marker without start marker
]

PYTHON_LANGS = frozenset({"python", "py", "python3"})
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
MARKER = re.compile(r"^\s*<!--\s*snippet:\s*(?P<path>[^\s#]+)#(?P<name>[\w.-]+)\s*-->\s*$")
REGION = re.compile(r"^\s*#\s*--8<--\s*\[(?P<what>start|end):(?P<name>[\w.-]+)\]\s*$")
MAX_DIFF_LINES = 20


@dataclass(frozen=True)
class Problem:
    path: Path  # relative to root when inside it
    line: int  # 1-based
    kind: Kind
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass
class Report:
    blocks: int = 0  # python blocks seen
    problems: list[Problem] = field(default_factory=list)
    synced: list[str] = field(default_factory=list)  # "FILE:LINE <- SRC#NAME", sync only


@dataclass(frozen=True)
class Fence:
    start: int  # 0-based index of the opening fence line
    end: int  # index of the closing fence line; len(lines) when unclosed
    lang: str
    indent: int


@dataclass
class _Source:
    regions: dict[str, list[str]]
    broken: set[str]  # names already reported at the source; blocks using them are skipped


def fences(lines: Sequence[str]) -> list[Fence]:
    """Fenced code blocks (``` or ~~~, 3+ chars); their content is never parsed further."""
    found: list[Fence] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None or (m["fence"][0] == "`" and "`" in m["info"]):
            i += 1
            continue
        char, size = m["fence"][0], len(m["fence"])
        close = re.compile(rf"^ *{re.escape(char)}{{{size},}}\s*$")
        end = next((j for j in range(i + 1, len(lines)) if close.match(lines[j])), len(lines))
        words = m["info"].split()
        found.append(Fence(i, end, words[0].lower() if words else "", len(m["indent"])))
        i = end + 1
    return found


def _normalise(lines: Sequence[str]) -> list[str]:
    out = [line.rstrip() for line in lines]
    while out and not out[0]:
        out.pop(0)
    while out and not out[-1]:
        out.pop()
    return out


def _unindent(line: str, indent: int) -> str:
    """Drop up to `indent` leading spaces: the fence's own indentation (e.g. inside a list)."""
    return line[min(indent, len(line) - len(line.lstrip(" "))) :]


def _load_source(path: Path, rel: Path, report: Report) -> _Source:
    lines = path.read_text(encoding="utf-8").splitlines()
    source = _Source({}, set())
    opened: dict[str, int] = {}
    seen: set[str] = set()

    def problem(i: int, kind: Kind, message: str) -> None:
        report.problems.append(Problem(rel, i + 1, kind, message))

    for i, line in enumerate(lines):
        if (m := REGION.match(line)) is None:
            continue
        name = m["name"]
        if m["what"] == "start":
            if name in seen:
                problem(i, "duplicate-region", f"region '{name}' is defined twice in this file")
                source.broken.add(name)
            seen.add(name)
            opened[name] = i
        elif name in opened:
            body = [x for x in lines[opened.pop(name) + 1 : i] if not REGION.match(x)]
            source.regions[name] = _normalise(textwrap.dedent("\n".join(body)).split("\n"))
        else:
            problem(i, "stray-end", f"region '{name}' ends here but never starts")
    for name, i in opened.items():
        problem(i, "unterminated-region", f"region '{name}' starts here but has no end marker")
        source.broken.add(name)
    return source


def _rel(path: Path, root: Path) -> Path:
    return path.relative_to(root) if path.is_relative_to(root) else path


def _check_markdown(
    md: Path, root: Path, fix: bool, report: Report, cache: dict[Path, _Source]
) -> None:
    rel = _rel(md, root)
    if not md.is_file():
        report.problems.append(Problem(rel, 1, "missing-file", "file not found"))
        return
    text = md.read_text(encoding="utf-8")
    lines = text.splitlines()
    blocks = fences(lines)
    inside = {i for b in blocks for i in range(b.start, b.end + 1)}
    python_starts = {b.start for b in blocks if b.lang in PYTHON_LANGS}

    def problem(i: int, kind: Kind, message: str) -> None:
        report.problems.append(Problem(rel, i + 1, kind, message))

    for i, line in enumerate(lines):
        if i in inside or not line.lstrip().startswith("<!-- snippet"):
            continue
        if not MARKER.match(line):
            problem(i, "bad-marker", "malformed marker, expected <!-- snippet: PATH#REGION -->")
        elif i + 1 not in python_starts:
            problem(i, "dangling-marker", "marker points nowhere: next line is not a python fence")

    replacements: list[tuple[Fence, list[str]]] = []
    for b in blocks:
        if b.lang not in PYTHON_LANGS:
            continue
        report.blocks += 1
        if b.end == len(lines):
            problem(b.start, "unclosed-fence", "python fence is never closed")
            continue
        marker = MARKER.match(lines[b.start - 1]) if b.start else None
        if marker is None:
            problem(b.start, "unmarked-fence", "unmarked python fence (no snippet marker before)")
            continue
        src_path, name = (root / marker["path"]).resolve(), marker["name"]
        ref = f"{marker['path']}#{name}"
        if not src_path.is_file():
            problem(b.start - 1, "missing-file", f"source file {marker['path']} not found")
            continue
        if src_path not in cache:
            cache[src_path] = _load_source(src_path, _rel(src_path, root), report)
        source = cache[src_path]
        if name in source.broken:
            continue
        if name not in source.regions:
            problem(b.start - 1, "missing-region", f"region '{name}' not found in {marker['path']}")
            continue
        body = [_unindent(line, b.indent) for line in lines[b.start + 1 : b.end]]
        block, region = _normalise(body), source.regions[name]
        if block == region:
            continue
        if fix:
            replacements.append((b, [" " * b.indent + x if x else "" for x in region]))
            report.synced.append(f"{rel}:{b.start + 1} <- {ref}")
            continue
        diff = list(difflib.unified_diff(block, region, f"{rel} (block)", ref, lineterm="", n=1))
        if len(diff) > MAX_DIFF_LINES:
            diff = [*diff[:MAX_DIFF_LINES], "..."]
        hint = "run `python -m tools.snippets sync`"
        message = "\n    ".join([f"block differs from {ref} ({hint}):", *diff])
        problem(b.start, "changed", message)

    for b, new in reversed(replacements):
        lines[b.start + 1 : b.end] = new
    new_text = "\n".join(lines) + ("\n" if text.endswith("\n") else "")
    if new_text != text:
        md.write_text(new_text, encoding="utf-8")


def default_files(root: Path) -> list[Path]:
    skill = root / "SKILL.md"
    return ([skill] if skill.is_file() else []) + sorted((root / "references").glob("*.md"))


def scan(root: Path, files: Sequence[Path] | None = None, *, fix: bool = False) -> Report:
    """Check (fix=False) or sync FILES, relative to root; default SKILL.md, references/*.md."""
    root = root.resolve()
    report, cache = Report(), dict[Path, _Source]()
    for md in default_files(root) if files is None else [(root / f).resolve() for f in files]:
        _check_markdown(md, root, fix, report, cache)
    report.problems.sort(key=lambda p: (str(p.path), p.line))
    return report


def check(root: Path, files: Sequence[Path] | None = None) -> list[Problem]:
    return scan(root, files).problems


def sync(root: Path, files: Sequence[Path] | None = None) -> list[Problem]:
    """Rewrite drifted blocks; return the problems sync cannot fix."""
    return scan(root, files, fix=True).problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.snippets", description=__doc__.split("\n")[0]
    )
    parser.add_argument("command", choices=["check", "sync"])
    parser.add_argument("--root", type=Path, default=Path("."), help="repo root (default: .)")
    parser.add_argument(
        "files", nargs="*", type=Path, help="markdown files (default: SKILL.md, references/*.md)"
    )
    args = parser.parse_args(argv)
    files = [f.resolve() for f in args.files] or None  # relative to the cwd, like any CLI
    report = scan(args.root, files, fix=args.command == "sync")
    for line in report.synced:
        print(f"synced {line}")
    for problem in report.problems:
        print(problem)
    if report.problems:
        print(f"{len(report.problems)} problem(s), {report.blocks} python block(s) checked")
        return 1
    print(f"OK: {report.blocks} python block(s) match their source regions")
    return 0


if __name__ == "__main__":
    sys.exit(main())

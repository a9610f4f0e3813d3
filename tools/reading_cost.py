"""What each SKILL.md recipe costs an agent to read and copy, in tokens.

The recipes are the list under `## Recipes` in SKILL.md: a bold name, the references to read,
then after "; copy " the files to copy, each a backticked path. `path` counts the whole file (a
directory: its .py files), `file.md#anchor` the section under that heading (to the next heading
of the same or a higher level), `file.py#region` the snippet region. Tokens are approximated as
characters / 4 (a rough average for English and Python; not measured here, as tiktoken is not
installed); with tiktoken installed, its cl100k encoding is used instead.

    python -m tools.reading_cost [--root DIR]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tools.snippets import Report, _load_source, fences

BUDGET = 15_000  # tokens per recipe, reading and copying included

ITEM = re.compile(r"`([^`\s]+)`")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


@dataclass(frozen=True)
class Recipe:
    name: str
    read: list[str]
    copy: list[str]


def recipes(root: Path) -> list[Recipe]:
    """The list items under `## Recipes`: `- **name**: read `a`, `b`; copy `c`, `d`.`"""
    text = (root / "SKILL.md").read_text(encoding="utf-8")
    body = text.split("\n## Recipes\n", 1)[1].split("\n## ", 1)[0]
    found: list[Recipe] = []
    for item in re.split(r"^- ", body, flags=re.MULTILINE)[1:]:
        name = re.match(r"\*\*(.+?)\*\*", item)
        if name is None:
            continue
        read, copy = [*re.split(r";\s+copy\s", item, maxsplit=1), ""][:2]
        found.append(Recipe(name[1], ITEM.findall(read), ITEM.findall(copy)))
    return found


def anchor(text: str) -> str:
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def section(path: Path, name: str) -> str:
    lines = path.read_text(encoding="utf-8").splitlines()
    fenced = {i for f in fences(lines) for i in range(f.start, f.end + 1)}
    headings = [
        (i, len(m[1]), anchor(m[2]))
        for i, line in enumerate(lines)
        if i not in fenced and (m := HEADING.match(line))
    ]
    for k, (i, level, slug) in enumerate(headings):
        if slug == name:
            end = next((j for j, lv, _ in headings[k + 1 :] if lv <= level), len(lines))
            return "\n".join(lines[i:end])
    raise LookupError(f"{path.name} has no heading #{name}")


def text_of(root: Path, item: str) -> str:
    """The text an item names: a file, a file's section (#anchor) or region (#name)."""
    relpath, _, part = item.partition("#")
    path = root / relpath
    if path.is_dir():
        return "\n".join(p.read_text(encoding="utf-8") for p in sorted(path.rglob("*.py")))
    if not part:
        return path.read_text(encoding="utf-8")
    if path.suffix == ".md":
        return section(path, part)
    source = _load_source(path, Path(relpath), Report())
    if part not in source.regions:
        raise LookupError(f"{relpath} has no region {part}")
    return "\n".join(source.regions[part])


def tokenizer() -> tuple[str, Callable[[str], int]]:
    try:
        import tiktoken  # type: ignore[import-not-found]
    except ImportError:
        return "chars/4", lambda text: len(text) // 4
    encoding = tiktoken.get_encoding("cl100k_base")
    return "tiktoken cl100k", lambda text: len(encoding.encode(text))


@dataclass(frozen=True)
class Cost:
    recipe: Recipe
    read: int
    copy: int

    @property
    def total(self) -> int:
        return self.read + self.copy


def costs(root: Path, count: Callable[[str], int]) -> list[Cost]:
    return [
        Cost(
            r,
            sum(count(text_of(root, i)) for i in r.read),
            sum(count(text_of(root, i)) for i in r.copy),
        )
        for r in recipes(root)
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--root", type=Path, default=Path(__file__).parents[1])
    args = parser.parse_args(argv)
    method, count = tokenizer()
    rows = costs(args.root, count)
    width = max(len(c.recipe.name) for c in rows)
    print(f"{'recipe':<{width}}  {'read':>6}  {'copy':>6}  {'total':>6}  (tokens, {method})")
    for c in rows:
        flag = f"  OVER {BUDGET}" if c.total > BUDGET else ""
        print(f"{c.recipe.name:<{width}}  {c.read:>6}  {c.copy:>6}  {c.total:>6}{flag}")
    print(f"budget per recipe: {BUDGET}")
    return 1 if any(c.total > BUDGET for c in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

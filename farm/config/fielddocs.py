"""The docs' list of inventory fields, written from the fields' own declarations (config/inventory.py).

The list sits between two markers in README.md or a page of docs/. `python -m farm.config.fielddocs`
prints it and `--write` puts it there; a test fails when the file and the declarations differ, so a
new field is documented by declaring it.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import MISSING
from pathlib import Path
from typing import Any, Iterator

from farm.config.inventory import Board, FieldSpec, Power, StandinSpec, declarations

BEGIN, END = "<!-- board-fields:begin -->", "<!-- board-fields:end -->"
BLOCK_RE = re.compile(re.escape(BEGIN) + r"\n(.*?)" + re.escape(END), re.S)
REPO = Path(__file__).resolve().parents[2]  # a checkout: the docs are not in the wheel


def _default(value: Any) -> str:
    if value is MISSING:
        return "required"
    if value is None or value == ():
        return ""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        return f"`[{', '.join(map(str, value))}]`"
    return f"`{int(value) if isinstance(value, float) and value.is_integer() else value}`"


def _rows() -> Iterator[tuple[str, str, FieldSpec, Any]]:
    """Every key an inventory takes: field, where it is taken, its declaration, its default."""
    for key, spec, default in declarations(Board):
        yield key, "boards, stand-ins" if spec.standin else "boards", spec, default
        if key == "power":
            for sub, sub_spec, sub_default in declarations(Power):
                yield f"power.{sub}", "power", sub_spec, sub_default
    for key, spec, default in declarations(StandinSpec):
        yield key, "stand-ins", spec, default


def fields_markdown() -> str:
    """The table of inventory fields, as the docs hold it between BEGIN and END."""
    lines = ["| field | in | value | default | what it is |", "| --- | --- | --- | --- | --- |"]
    for key, where, spec, default in _rows():  # a key with no help: its expected value says what it is
        value, meaning = (spec.what, spec.help) if spec.help else ("", spec.what)
        lines.append(f"| `{key}` | {where} | {value} | {_default(default)} | {meaning} |")
    return "\n".join(lines) + "\n"


def marked_files(root: Path = REPO) -> list[Path]:
    """The docs that hold the list: README.md or a page of docs/, wherever it was moved."""
    return [p for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))]
            if p.is_file() and BEGIN in p.read_text(encoding="utf-8")]


def written(path: Path) -> str | None:
    """The list as `path` holds it between the markers; None without them."""
    found = BLOCK_RE.search(path.read_text(encoding="utf-8"))
    return found.group(1) if found else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m farm.config.fielddocs", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the list in the docs that hold its markers")
    args = parser.parse_args(argv)
    if not args.write:
        print(fields_markdown(), end="")
        return 0
    for path in marked_files():
        text = path.read_text(encoding="utf-8")
        path.write_text(BLOCK_RE.sub(lambda _: f"{BEGIN}\n{fields_markdown()}{END}", text, count=1), encoding="utf-8")
        print(f"wrote the board fields into {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

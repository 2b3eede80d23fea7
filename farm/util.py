"""Small helpers every layer uses: hints, number and list checks, time stamps, run ids, hashes, atomic JSON."""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import json
import os
import re
import secrets
import shutil
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# Board and stand-in names become folder and file names: a letter or digit first, so never `.` or `..`.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


# Terminal escape sequences (CSI, OSC: colours, cursor moves, a window title, hyperlinks) and the other C0/C1
# controls but newline and tab: what a board says must not rewrite the controller's terminal.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]?"
                      r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: object) -> str:
    """Text from a board (an error, a fact), fit to print: no terminal escape, no control character."""
    return _ESCAPES.sub("", str(text))


def did_you_mean(word: Any, choices: Iterable[Any], otherwise: str) -> str:
    """The hint for a misspelt name: the nearest choice, else `otherwise` and every choice."""
    choices = [str(c) for c in choices]
    near = difflib.get_close_matches(str(word), choices, n=1)
    return f"did you mean {near[0]!r}?" if near else otherwise + ", ".join(choices)


def is_number(value: Any, whole: bool = False) -> bool:
    """A number from a YAML or TOML file: never a bool (True is an int in Python); an int when `whole`."""
    return not isinstance(value, bool) and isinstance(value, int if whole else (int, float))


def split_list(text: str) -> list[str]:
    """Comma-separated names, as the command line and FARM_* take them: 'a, b,,c' is [a, b, c]."""
    return [part.strip() for part in text.split(",") if part.strip()]


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def new_run_id() -> str:
    """UTC time plus randomness: sorts by time, and two controllers never collide."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path: Path, doc: dict) -> None:
    """Write to a temporary name, then rename: a reader never sees half a document."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    partial.write_text(json.dumps(doc, indent=1) + "\n")
    partial.replace(path)


def remove_tree(path: Path, inside: Path) -> None:
    """Delete a folder farm made, and only that: a direct child of `inside`, named as farm names things.

    A stand-in named `..` once had the lab dir's parent emptied; nothing here
    follows a link or leaves `inside`.
    """
    path, inside = Path(path), Path(inside)
    if not NAME_RE.match(path.name) or path.parent.resolve() != inside.resolve() or path.is_symlink():
        raise ValueError(f"refusing to delete {path}: not a folder farm made directly in {inside}")
    if path.exists():
        shutil.rmtree(path)

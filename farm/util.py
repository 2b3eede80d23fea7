"""Small helpers every layer uses: time stamps, run ids, file hashes, atomic JSON writes."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
import secrets
import subprocess
import threading
from pathlib import Path


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


@functools.cache
def git_commit(folder: Path) -> str | None:
    """The commit of a checkout (provenance of farm itself); None outside git (an installed wheel)."""
    if not (Path(folder) / ".git").exists():
        return None
    try:
        proc = subprocess.run(["git", "-C", str(folder), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() or None

"""A job's request, the one thing a submitter writes that a worker acts on: its closed shape, checked on the worker.

Anyone who can reach the queue's database can write a job row by hand, so the
worker trusts nothing in it: the kind is one of KINDS, the pool one the worker
serves (and the job's own queue), each file one of ROLES (data the child reads,
never code or a worker setting) with a sha256 and a plain file name, and each
option one of FORWARDED with a plain value. A request that is anything else is
refused before a byte is written. Its pool names its queue and its lock (`queue_of`, `lock_of`).
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from farm.errors import QueueError
from farm.util import NAME_RE

KINDS = ("run", "nightly")
# The files a job brings, each the `farm run` option of the same name; the checklist travels resolved.
ROLES = {"model": True, "data": True, "checklist": True, "spec": False}  # role -> required
FORWARDED = ("variants", "runs", "warmup", "rounds", "deadline", "board", "tag")  # run options a job carries
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
VALUE_RE = re.compile(r"^[A-Za-z0-9._,*?\[\]:@+-]{1,200}$")  # numbers, variant lists, board globs, tags


def queue_of(pool: str) -> str:
    """The pool's queue: a worker takes the jobs of the pools it serves only."""
    return f"farm-pool-{pool}"


def lock_of(pool: str) -> str:
    """The pool's lock: one job at a time on a pool's boards."""
    return f"farm-pool:{pool}"


def file_name(role: str, path: Path, sha: str) -> str:
    """The name a file travels under: its own when plain (a worker refuses any other), else role and hash."""
    name = Path(path).name
    return name if NAME_RE.match(name) else f"{role}-{sha[:12]}"


def _refuse(job_id: int, what: str) -> QueueError:
    return QueueError(f"job {job_id}: {what}; refused (a job is a model, its data, spec and checklist, and run "
                      "options: resubmit it with farm submit)")


def check(request: dict, job_id: int, queue: str, pools: tuple[str, ...]) -> None:
    """Raise QueueError unless the request is one farm submit could have made, for a pool this worker serves."""
    if not isinstance(request, dict):
        raise _refuse(job_id, "the request is not a mapping")
    if request.get("kind") not in KINDS:
        raise _refuse(job_id, f"kind {request.get('kind')!r} is not one of {', '.join(KINDS)}")
    pool = request.get("pool")
    if pool not in pools or queue != queue_of(pool):
        raise _refuse(job_id, f"pool {pool!r} in queue {queue!r} is not a pool this worker serves "
                      f"({', '.join(pools)})")
    files = request.get("files")
    if not isinstance(files, dict):
        raise _refuse(job_id, "files is not a mapping of role to file")
    if unknown := sorted(set(files) - set(ROLES), key=str):
        raise _refuse(job_id, f"file role {unknown[0]!r} is not one of {', '.join(ROLES)}")
    if missing := [role for role, required in ROLES.items() if required and role not in files]:
        raise _refuse(job_id, f"no {missing[0]} file")
    for role, entry in files.items():
        if not isinstance(entry, dict) or not SHA256_RE.match(str(entry.get("sha256", ""))):
            raise _refuse(job_id, f"{role}: expected a sha256 (64 hex digits)")
        name = entry.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name) or PurePosixPath(name).name != name:
            raise _refuse(job_id, f"{role}: file name {name!r} is not a plain name (letters, digits, '.', '_', '-')")
    options = request.get("options") or {}
    if not isinstance(options, dict):
        raise _refuse(job_id, "options is not a mapping")
    for name, value in options.items():
        if name not in FORWARDED:
            raise _refuse(job_id, f"option {name!r} is not one a queued job may set ({', '.join(FORWARDED)})")
        for one in value if isinstance(value, list) else [value]:
            if isinstance(one, bool) or not isinstance(one, (str, int, float)) or not VALUE_RE.match(str(one)):
                raise _refuse(job_id, f"option {name}: value {one!r} is not a plain value")


def inside(folder: Path, role: str, name: str) -> Path:
    """Where a checked file goes: `folder/role/name`, refused if it resolves anywhere else."""
    root = folder.resolve()
    path = (root / role / name).resolve()
    if not path.is_relative_to(root) or path.parent.parent != root:
        raise QueueError(f"{role}/{name}: resolves to {path}, outside the job folder {root}; refused")
    return path

"""The submitter's side: check a run here, store its files once, queue it, follow it.

Everything a worker could refuse is checked before anything is queued (model,
data and spec against each other, the checklist, the variants), so bad input is
exit 2 on the submitter's terminal, not a failed job an hour later. The files
travel by content: the job names them by sha256, the store holds each once.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import yaml

from farm.build.loading import load_model_and_data
from farm.build.variants import check_variants
from farm.config.checklist import load_checklist
from farm.config.settings import RunSettings
from farm.errors import ConfigError
from farm.queue.request import file_name
from farm.queue.store import Store
from farm.statuses import FINAL, JobOutcome, JobState

log = logging.getLogger(__name__)


def _flat_checklist(path: Path, folder: Path) -> Path:
    """The checklist as it resolves here (its `extends:` followed), so the worker needs no sibling files."""
    checklist = load_checklist(path)
    flat = folder / Path(checklist.path).name
    flat.write_text(yaml.safe_dump(checklist.written(), sort_keys=False))
    return flat


def build_request(settings: RunSettings, kind: str, pool: list[str], store: Store,
                  forwarded: dict) -> dict:
    """Check the run as `farm run` would, store its files, and return the job's request."""
    if len(pool) != 1:
        raise ConfigError(f"a queued run is for exactly one pool (--pool P), got {len(pool)}: "
                          "submit one job per pool")
    check_variants(settings.variants)
    load_model_and_data(settings.model, settings.data, settings.spec)
    files = {"model": settings.model, "data": settings.data}
    if settings.spec is not None:
        files["spec"] = settings.spec
    with tempfile.TemporaryDirectory(prefix="farm-submit-") as folder:
        files["checklist"] = _flat_checklist(settings.checklist, Path(folder))
        shas = {role: store.put_blob(path) for role, path in files.items()}
        stored = {role: {"sha256": sha, "name": file_name(role, files[role], sha)} for role, sha in shas.items()}
    # Who submitted it and when are the database's (the job's row is written by it): not a word of the request.
    return {"kind": kind, "pool": pool[0], "files": stored, "options": forwarded}


def follow(store: Store, job_id: int, poll_s: float = 1.0) -> dict:
    """Wait for a job to end, saying each change of state; its last row."""
    seen = None
    while True:
        rows = store.jobs(job_id=job_id, limit=1)
        if not rows:
            raise ConfigError(f"job {job_id} is not in the queue {store.where}: check the number (farm queue)")
        row = rows[0]
        now = (row["state"], row["worker"], row["attempt"])
        if now != seen:
            where = f" on {row['worker']} (attempt {row['attempt']})" if row["worker"] else ""
            log.info(f"job {job_id}: {row['state'] or row['outcome']}{where}")
            seen = now
        if row["state"] in FINAL or row["state"] is None:
            return row
        time.sleep(poll_s)


def exit_code(row: dict) -> int:
    """The run's own exit code; a job that ended without one (cancelled, lost its worker) is not a pass."""
    if row["exit_code"] is not None and row["outcome"] != JobOutcome.RUNNING:
        return row["exit_code"]
    return 130 if row["state"] in (JobState.CANCELLED, JobState.ABORTED) else 1

"""What each dashboard page shows, as plain data: the HTML pages, the JSON API and /metrics read the same.

Everything comes from the history (SQLite or PostgreSQL), the queue when one is
given, and the results folder only for a run's own files. Nothing here writes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from farm.judge.changes import series_changes
from farm.queue.store import SHOWN_STATES, pool_counts
from farm.record.history import History
from farm.record.signoff import canonical, verify
from farm.results import BoardStatus
from farm.statuses import JobState, RunOutcome
from farm.ui.report import offload_text, provider_text

# LAVA's health idea: a board that often cannot be reached or prepared is unhealthy, whatever the model does.
INFRASTRUCTURE = (BoardStatus.UNREACHABLE.value, BoardStatus.LINK_LOST.value, BoardStatus.NOT_READY.value)
FIGURES = {"p50": "p50 ms", "p95": "p95 ms", "peak_rss_mb": "peak memory MB", "top1": "accuracy"}


@dataclass(frozen=True)
class Sources:
    """Where the dashboard reads: the history, the results folder, and optionally the queue and signers."""

    history: History
    results: Path
    queue: object | None = None            # farm.queue.store.Store
    allowed_signers: Path | None = None
    # sha256 of (record, signature, allowed_signers) -> (when, verified, problems): see `signoffs`
    verified: dict = field(default_factory=dict, compare=False, repr=False)


# A verdict is kept for a record, its signature and the allowed signers exactly as they were, and not for
# long: one resting on the time (a record's age) is at most this old.
VERIFIED_FOR_S = 600.0
VERIFIED_KEPT = 1000


def _age(stamp: str | None) -> str:
    if not stamp:
        return "-"
    when = dt.datetime.fromisoformat(stamp)
    if when.tzinfo is None:  # a run another tool recorded without a zone: farm's times are UTC
        when = when.replace(tzinfo=dt.timezone.utc)
    seconds = (dt.datetime.now(dt.timezone.utc) - when).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size:.0f} {unit} ago"
    return "just now"


def lab(sources: Sources, last_runs: int = 20) -> dict:
    """Each board of the last runs: class, pools, last seen, last status, infrastructure failure rate, facts."""
    rows = sources.history.board_runs(last_runs)
    boards: dict[str, dict] = {}
    for row in rows:  # newest first
        board = boards.setdefault(row["board"], {
            "name": row["board"], "class": row["board_class"], "pools": row["pools"].split(",") if row["pools"] else [],
            "standin": bool(row["standin"]), "last_status": row["status"], "last_error": row["error"],
            "last_run": row["run_id"], "last_seen": None, "runs": 0, "infrastructure_failures": 0, "facts": {}})
        board["runs"] += 1
        board["infrastructure_failures"] += row["status"] in INFRASTRUCTURE
        if board["last_seen"] is None and row["status"] not in INFRASTRUCTURE:
            board["last_seen"] = row["started"]
    held, health = _holders(sources), sources.history.health()
    for board in boards.values():
        board["health"] = health.get(board["name"])  # state, reason, since: bad and retired boards are left out
        board["failure_rate"] = board["infrastructure_failures"] / board["runs"]
        board["last_seen_age"] = _age(board["last_seen"])
        board["held_by"] = next((h for pool, h in held.items() if pool in board["pools"]), None)
        run = sources.history.load_run(board["last_run"]).board(board["name"])
        board["facts"] = {k: run.facts[k] for k in ("python", "onnxruntime", "numpy", "machine", "cpu", "cores")
                          if run is not None and k in run.facts}
        board["accelerator"] = [{"variant": name, "toolchain": v.toolchain or "-", "provider": provider_text(run, v),
                                 "offload": offload_text(v), "simulated": v.simulated}
                                for name, v in (run.variants.items() if run is not None else ()) if v.toolchain]
    pools = sorted({p for b in boards.values() for p in b["pools"]})
    return {"last_runs": last_runs, "pools": pools, "boards": sorted(boards.values(), key=lambda b: b["name"])}


def _holders(sources: Sources) -> dict[str, str]:
    """pool -> the queued job running on it, when there is a queue."""
    if sources.queue is None:
        return {}
    return {row["pool"]: f"job {row['job_id']} on {row['worker']} ({row['submitted_by']})"
            for row in sources.queue.jobs(limit=200) if row["state"] == JobState.DOING}


def runs(sources: Sources, *, pool: str = "", board: str = "", model: str = "", status: str = "",
         since: str = "", until: str = "", limit: int = 1000) -> dict:
    """The runs matching every filter given, newest first, each with its files' links."""
    found = sources.history.runs(pool=pool or None, board=board or None, model=model or None,
                                      passed={RunOutcome.PASSED: True, RunOutcome.FAILED: False}.get(status),
                                      since=since or None, until=until or None, limit=limit)
    for run in found:
        folder = sources.results / run["run_id"]
        run["files"] = [name for name in RUN_FILES if (folder / name).is_file()]
    return {"filters": {"pool": pool, "board": board, "model": model, "status": status, "since": since,
                        "until": until}, "runs": found}


RUN_FILES = ("report.html", "junit.xml", "results.json")


def trends(sources: Sources, board: str, variant: str, model: str = "", limit: int = 200) -> dict:
    """A board x variant's figures across runs, with regressions marked and the baseline."""
    rows = sources.history.series(board, variant, model or None, limit, verdicts=True)
    models = sorted({r["model_name"] for r in rows if r["model_name"]})
    baseline = None
    if rows:
        found = sources.history.baseline(board, rows[-1]["model_name"], variant)
        if found is not None:
            stats = found.variant.latency_ms or {}
            baseline = {"run_id": found.run_id, "pinned": found.pinned, "p50": stats.get("p50"),
                        "p95": stats.get("p95"), "peak_rss_mb": found.variant.peak_rss_mb}
    # Change points over one model's series only: a new model under the board is not a regression.
    same_model = [r for r in rows if r["model_name"] == rows[-1]["model_name"]]
    changes = [c for figure in FIGURES for c in series_changes(same_model, figure)]
    return {"board": board, "variant": variant, "model": model, "models": models, "baseline": baseline,
            "points": rows, "figures": FIGURES, "changes": changes}


def signoffs(sources: Sources, limit: int = 100) -> dict:
    """Each sign-off with its verification (when the allowed signers are known)."""
    found = []
    signers = sources.allowed_signers.read_bytes() if sources.allowed_signers is not None and \
        sources.allowed_signers.is_file() else None
    for row in sources.history.signoff_records(limit):
        stored, signature = row.pop("stored"), row.pop("signature")
        row["verified"], row["problems"] = None, []
        if sources.allowed_signers is not None:
            row["verified"], row["problems"] = _verified(sources, stored, signature, signers)
        found.append(row)
    return {"verifying": sources.allowed_signers is not None, "signoffs": found}


def _verified(sources: Sources, stored: bytes, signature: str, signers: bytes | None) -> tuple[bool, list[str]]:
    """A record's verification, once per stored record, signature and allowed signers (and VERIFIED_FOR_S).

    Verifying runs ssh-keygen 4 times per record and judges its verdicts again: on every GET, 100
    records took 36 s, anyone's to ask for (benchmarks/dashboard.py --signoffs).
    """
    key = hashlib.sha256(b"\0".join([stored, signature.encode(), signers or b"-"])).hexdigest()
    kept = sources.verified.get(key)
    if kept is None or time.monotonic() - kept[0] > VERIFIED_FOR_S:
        with tempfile.TemporaryDirectory(prefix="farm-serve-") as folder:
            path = Path(folder) / "signoff.json"
            path.write_bytes(canonical(sources.history.stored_record(stored)))
            path.with_name("signoff.json.sig").write_text(signature)
            outcome = verify(path, sources.allowed_signers, record_only=True)  # the history keeps no run folder
        kept = (time.monotonic(), outcome.verified, outcome.problems)
        while len(sources.verified) >= VERIFIED_KEPT:  # the oldest first
            sources.verified.pop(next(iter(sources.verified)))
        sources.verified[key] = kept
    return kept[1], list(kept[2])


def queue(sources: Sources) -> dict:
    if sources.queue is None:
        return {"enabled": False, "pools": {}, "jobs": []}
    jobs = sources.queue.jobs(limit=200)
    for job in jobs:
        job.pop("request", None)
    return {"enabled": True, "pools": pool_counts(jobs), "jobs": [j for j in jobs if j["state"] in SHOWN_STATES]}

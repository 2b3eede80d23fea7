"""What the queue keeps beside procrastinate's own tables, in the same PostgreSQL database.

- blobs: models, data, specs and checklists by sha256, stored once, so a worker on
  another machine runs exactly the bytes that were submitted;
- jobs: who submitted what for which pool, which worker took it, which attempt, how it ended;
- run files: results.json, junit.xml and report.html of each job's run (as blobs), for `farm fetch`;
- schedules: the periodic runs (`farm schedule`), read by the workers every minute.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from farm.errors import ConfigError, QueueError

SCHEMA = """
CREATE TABLE IF NOT EXISTS farm_blobs (
    sha256 TEXT PRIMARY KEY, size BIGINT NOT NULL, data BYTEA NOT NULL, stored_at TIMESTAMPTZ DEFAULT now());
CREATE TABLE IF NOT EXISTS farm_jobs (
    job_id BIGINT PRIMARY KEY, pool TEXT NOT NULL, kind TEXT NOT NULL, run_id TEXT NOT NULL,
    submitted_by TEXT, submitted_at TIMESTAMPTZ DEFAULT now(), request JSONB NOT NULL,
    worker TEXT, attempt INTEGER DEFAULT 0, started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ,
    exit_code INTEGER, outcome TEXT, message TEXT);
CREATE TABLE IF NOT EXISTS farm_run_files (
    run_id TEXT NOT NULL, name TEXT NOT NULL, sha256 TEXT NOT NULL REFERENCES farm_blobs(sha256), attempt INTEGER,
    PRIMARY KEY (run_id, name));
CREATE TABLE IF NOT EXISTS farm_schedules (
    name TEXT PRIMARY KEY, pool TEXT NOT NULL, cron TEXT NOT NULL, request JSONB NOT NULL, created_by TEXT,
    created_at TIMESTAMPTZ DEFAULT now(), last_due BIGINT);
"""


# procrastinate's job states as farm shows them: a finished, failed, cancelled or aborted job is done.
SHOWN_STATES = {"todo": "queued", "doing": "running"}


def pool_counts(jobs: list[dict]) -> dict[str, dict[str, int]]:
    """Jobs (rows of Store.jobs) per pool and state: queued, running, done."""
    counts: dict[str, dict[str, int]] = {}
    for job in jobs:
        state = SHOWN_STATES.get(job["state"] or "", "done")
        counts.setdefault(job["pool"], {"queued": 0, "running": 0, "done": 0})[state] += 1
    return counts


class Store:
    """farm's queue tables; every method opens (and closes) its own connection."""

    def __init__(self, url: str):
        if not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"queue {url!r}: expected a postgresql:// URL (the queue lives in PostgreSQL)")
        self.url = url

    @property
    def where(self) -> str:
        """The store for messages: never its password."""
        return self.url.split("@")[-1]

    @contextmanager
    def connect(self) -> Iterator[Any]:
        import psycopg

        try:
            connection = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise QueueError(f"queue {self.where}: cannot connect ({str(exc).strip()}): check the server, "
                             "the URL and its credentials") from exc
        try:
            yield connection
        except psycopg.Error as exc:
            raise QueueError(f"queue {self.where}: {type(exc).__name__}: {str(exc).strip()}") from exc
        finally:
            connection.close()

    def _rows(self, query: str, params: tuple = ()) -> list[dict]:
        from psycopg.rows import dict_row

        with self.connect() as db, db.cursor(row_factory=dict_row) as cursor:
            cursor.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    # -- blobs ------------------------------------------------------------------------------------
    def put_blob(self, path: Path) -> str:
        """Store a file once (by sha256); its sha256."""
        data = Path(path).read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        with self.connect() as db:
            if db.execute("SELECT 1 FROM farm_blobs WHERE sha256 = %s", (sha,)).fetchone() is None:
                db.execute("INSERT INTO farm_blobs (sha256, size, data) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                           (sha, len(data), data))
        return sha

    def get_blob(self, sha: str, target: Path) -> Path:
        """Write a stored blob to `target`, checking its sha256 on the way."""
        with self.connect() as db:
            row = db.execute("SELECT data FROM farm_blobs WHERE sha256 = %s", (sha,)).fetchone()
        if row is None:
            raise QueueError(f"blob {sha[:16]}... is not in the queue's store {self.where}: it was deleted "
                             "or never stored; submit the job again")
        data = bytes(row[0])
        if hashlib.sha256(data).hexdigest() != sha:
            raise QueueError(f"blob {sha[:16]}... in {self.where} does not hash to its name: the store is "
                             "corrupt; submit the job again")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        partial.write_bytes(data)
        partial.replace(target)
        return target

    # -- jobs -------------------------------------------------------------------------------------
    def job_submitted(self, job_id: int, pool: str, kind: str, run_id: str, by: str, request: dict) -> None:
        with self.connect() as db:
            db.execute("INSERT INTO farm_jobs (job_id, pool, kind, run_id, submitted_by, submitted_at, request) "
                       "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (job_id) DO NOTHING",
                       (job_id, pool, kind, run_id, by, request["submitted_at"], json.dumps(request)))

    def job_started(self, job_id: int, run_id: str, request: dict, worker: str, attempt: int) -> None:
        """An attempt begins (the worker may see the job before its submitter's row is written)."""
        with self.connect() as db:
            db.execute("INSERT INTO farm_jobs (job_id, pool, kind, run_id, submitted_by, submitted_at, request, worker, "
                       "attempt, started_at, outcome) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, now(), 'running') "
                       "ON CONFLICT (job_id) DO UPDATE SET worker = EXCLUDED.worker, attempt = EXCLUDED.attempt, "
                       "started_at = now(), finished_at = NULL, exit_code = NULL, outcome = 'running', message = NULL",
                       (job_id, request["pool"], request["kind"], run_id, request.get("submitted_by"),
                        request["submitted_at"], json.dumps(request), worker, attempt))

    def job_finished(self, job_id: int, attempt: int, outcome: str, exit_code: int | None, message: str) -> None:
        """The end of an attempt; an older attempt never overwrites a newer one's outcome."""
        with self.connect() as db:
            db.execute("UPDATE farm_jobs SET finished_at = now(), outcome = %s, exit_code = %s, message = %s "
                       "WHERE job_id = %s AND attempt <= %s", (outcome, exit_code, message, job_id, attempt))

    def job_note(self, job_id: int, outcome: str, message: str) -> None:
        """An outcome decided outside a worker: cancelled while queued, given up after its retry."""
        with self.connect() as db:
            db.execute("UPDATE farm_jobs SET outcome = %s, message = %s, finished_at = now() WHERE job_id = %s",
                       (outcome, message, job_id))

    def jobs(self, pool: str | None = None, job_id: int | None = None, limit: int = 50) -> list[dict]:
        """farm's view of the jobs joined with procrastinate's state, newest first."""
        clauses, params = [], []
        if pool:
            clauses.append("f.pool = %s")
            params.append(pool)
        if job_id is not None:
            clauses.append("f.job_id = %s")
            params.append(job_id)
        clause = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return self._rows(
            "SELECT f.*, j.status::text AS state, j.abort_requested FROM farm_jobs f "
            f"LEFT JOIN procrastinate_jobs j ON j.id = f.job_id {clause} ORDER BY f.job_id DESC LIMIT %s",
            (*params, limit))

    # -- run files --------------------------------------------------------------------------------
    def save_run_files(self, run_id: str, attempt: int, files: dict[str, Path]) -> None:
        for name, path in files.items():
            sha = self.put_blob(path)
            with self.connect() as db:
                db.execute("INSERT INTO farm_run_files VALUES (%s, %s, %s, %s) ON CONFLICT (run_id, name) DO UPDATE "
                           "SET sha256 = EXCLUDED.sha256, attempt = EXCLUDED.attempt "
                           "WHERE farm_run_files.attempt <= EXCLUDED.attempt", (run_id, name, sha, attempt))

    def run_files(self, run_id: str) -> dict[str, str]:
        return {r["name"]: r["sha256"] for r in self._rows("SELECT name, sha256 FROM farm_run_files WHERE run_id = %s",
                                                           (run_id,))}

    # -- schedules --------------------------------------------------------------------------------
    def add_schedule(self, name: str, pool: str, cron: str, request: dict, by: str) -> None:
        with self.connect() as db:
            db.execute("INSERT INTO farm_schedules (name, pool, cron, request, created_by) VALUES (%s, %s, %s, %s, %s) "
                       "ON CONFLICT (name) DO UPDATE SET pool = EXCLUDED.pool, cron = EXCLUDED.cron, "
                       "request = EXCLUDED.request, created_by = EXCLUDED.created_by, created_at = now()",
                       (name, pool, cron, json.dumps(request), by))

    def schedules(self) -> list[dict]:
        return self._rows("SELECT * FROM farm_schedules ORDER BY name")

    def claim_due(self, name: str, timestamp: int) -> bool:
        """True for exactly one caller per schedule and minute, however many workers tick."""
        with self.connect() as db:
            return db.execute("UPDATE farm_schedules SET last_due = %s WHERE name = %s AND "
                              "(last_due IS NULL OR last_due < %s)", (timestamp, name, timestamp)).rowcount == 1

    def remove_schedule(self, name: str) -> bool:
        with self.connect() as db:
            return db.execute("DELETE FROM farm_schedules WHERE name = %s", (name,)).rowcount > 0

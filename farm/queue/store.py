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
from farm.record.storeurl import redact_url, scrub
from farm.statuses import JobOutcome, JobState

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

-- A job's row is written in the transaction that queues it, by the database: who submitted it is the
-- session's user (never a word of the job), and nobody but a worker may change it.
CREATE OR REPLACE FUNCTION farm_job_submitted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    _by TEXT := session_user;
BEGIN
    IF NEW.args ? 'schedule' THEN
        _by := format('schedule %s (%s), queued by %s', NEW.args->>'schedule',
                      (SELECT created_by FROM farm_schedules WHERE name = NEW.args->>'schedule'), session_user);
    END IF;
    INSERT INTO farm_jobs (job_id, pool, kind, run_id, submitted_by, submitted_at, request)
    VALUES (NEW.id, coalesce(NEW.args->>'pool', '?'), coalesce(NEW.args->>'kind', '?'),
            to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD"T"HH24MISS"Z"') || '-q' || NEW.id, _by, now(), NEW.args)
    ON CONFLICT (job_id) DO NOTHING;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS farm_job_submitted ON procrastinate_jobs;
CREATE TRIGGER farm_job_submitted AFTER INSERT ON procrastinate_jobs
    FOR EACH ROW WHEN (NEW.task_name = 'farm:run') EXECUTE FUNCTION farm_job_submitted();

-- Cancelling: one's own jobs; anyone's with farm_canceller, or as a role that may change the queue
-- (a worker, the owner).
CREATE OR REPLACE FUNCTION farm_cancel(_job_id BIGINT) RETURNS TEXT
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    _by TEXT := (SELECT submitted_by FROM farm_jobs WHERE job_id = _job_id);
BEGIN
    IF _by IS DISTINCT FROM session_user::text
       AND NOT has_table_privilege(session_user, 'procrastinate_jobs', 'UPDATE')
       AND NOT (EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'farm_canceller')
                AND pg_has_role(session_user, 'farm_canceller', 'MEMBER')) THEN
        RAISE EXCEPTION
            'job % was submitted by %, not %: only its submitter or a member of farm_canceller may cancel it',
            _job_id, _by, session_user USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF procrastinate_cancel_job_v1(_job_id, false, false) IS NOT NULL THEN
        UPDATE farm_jobs SET outcome = 'cancelled', message = 'cancelled while queued', finished_at = now()
        WHERE job_id = _job_id;
        RETURN 'cancelled';
    END IF;
    IF procrastinate_cancel_job_v1(_job_id, true, false) IS NOT NULL THEN
        RETURN 'stopping';
    END IF;
    RETURN NULL;
END $$;
"""
# The last object SCHEMA makes: where it exists, a session needs no right to create anything.
SCHEMA_MARK = "farm_cancel(bigint)"

# `farm queue roles`: group roles a lab grants its people and its workers (docs/queue.md). A submitter queues
# jobs, stores their files and sees every job; it changes nothing of anyone else's. {history} are the history's
# tables: owned by farm_worker, whose runs record there.
ROLES = """
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'farm_submitter') THEN CREATE ROLE farm_submitter; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'farm_worker') THEN CREATE ROLE farm_worker; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'farm_canceller') THEN CREATE ROLE farm_canceller; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'farm_scheduler') THEN CREATE ROLE farm_scheduler; END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO farm_submitter, farm_scheduler', current_schema());
    EXECUTE format('GRANT USAGE, CREATE ON SCHEMA %I TO farm_worker', current_schema());
END $$;
GRANT SELECT ON farm_jobs, farm_run_files, farm_schedules, procrastinate_jobs, {history} TO farm_submitter;
GRANT SELECT, INSERT ON farm_blobs TO farm_submitter;
GRANT INSERT ON procrastinate_jobs, procrastinate_events TO farm_submitter;
GRANT USAGE ON SEQUENCE procrastinate_jobs_id_seq, procrastinate_events_id_seq TO farm_submitter;
GRANT SELECT, INSERT, UPDATE, DELETE ON farm_schedules TO farm_scheduler;
GRANT ALL ON farm_jobs, farm_blobs, farm_run_files, farm_schedules, procrastinate_jobs, procrastinate_events,
    procrastinate_workers, procrastinate_periodic_defers TO farm_worker;
DO $$ BEGIN
    EXECUTE format('GRANT ALL ON ALL SEQUENCES IN SCHEMA %I TO farm_worker', current_schema());
END $$;
"""


# procrastinate's job states as farm shows them: a finished, failed, cancelled or aborted job is done.
SHOWN_STATES = {JobState.TODO: "queued", JobState.DOING: "running"}


def pool_counts(jobs: list[dict]) -> dict[str, dict[str, int]]:
    """Jobs (rows of Store.jobs) per pool and state: queued, running, done."""
    counts: dict[str, dict[str, int]] = {}
    for job in jobs:
        state = SHOWN_STATES.get(job["state"], "done")
        counts.setdefault(job["pool"], {"queued": 0, "running": 0, "done": 0})[state] += 1
    return counts


def _outcome(word: str | None) -> JobOutcome | None:
    """farm_jobs.outcome as a member; `exit N` (an older farm's word for another exit code) is OTHER_EXIT."""
    if word is None:
        return None
    return JobOutcome.OTHER_EXIT if word.startswith("exit ") else JobOutcome(word)


class Store:
    """farm's queue tables; every method opens (and closes) its own connection."""

    def __init__(self, url: str):
        if not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"queue {redact_url(url)!r}: expected a postgresql:// URL "
                              "(the queue lives in PostgreSQL)")
        self.url = url

    @property
    def where(self) -> str:
        """The store for messages: never its password."""
        return redact_url(self.url)

    @contextmanager
    def connect(self) -> Iterator[Any]:
        import psycopg

        try:
            connection = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise QueueError(f"queue {self.where}: cannot connect ({scrub(str(exc).strip(), self.url)}): check the "
                             "server, the URL and its credentials") from exc
        try:
            yield connection
        except psycopg.errors.InsufficientPrivilege as exc:
            raise QueueError(f"queue {self.where}: {scrub(str(exc).strip(), self.url)}: your database role may not do "
                             "this; ask the queue's owner for the role it needs (docs/queue.md)") from exc
        except psycopg.Error as exc:
            raise QueueError(f"queue {self.where}: {type(exc).__name__}: {scrub(str(exc).strip(), self.url)}") from exc
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
    def job_started(self, job_id: int, worker: str, attempt: int) -> str:
        """An attempt begins; the run id the database gave the job when it was queued (farm_job_submitted)."""
        with self.connect() as db:
            row = db.execute("UPDATE farm_jobs SET worker = %s, attempt = %s, started_at = now(), finished_at = NULL, "
                             "exit_code = NULL, outcome = 'running', message = NULL WHERE job_id = %s RETURNING run_id",
                             (worker, attempt, job_id)).fetchone()
        if row is None:
            raise QueueError(f"job {job_id} has no row in farm_jobs (queued outside farm submit, or before "
                             f"{self.where} had farm's schema): submit it again")
        return row[0]

    def cancel(self, job_id: int) -> JobOutcome | None:
        """'cancelled' (it was queued), 'stopping' (its worker is asked to stop it) or None (it ended);
        farm_cancel refuses another's job unless this session's role may cancel any."""
        with self.connect() as db:
            done = db.execute("SELECT farm_cancel(%s)", (job_id,)).fetchone()[0]
        return JobOutcome(done) if done is not None else None

    def job_finished(self, job_id: int, attempt: int, outcome: JobOutcome, exit_code: int | None, message: str) -> None:
        """The end of an attempt; an older attempt never overwrites a newer one's outcome."""
        with self.connect() as db:
            db.execute("UPDATE farm_jobs SET finished_at = now(), outcome = %s, exit_code = %s, message = %s "
                       "WHERE job_id = %s AND attempt <= %s", (outcome, exit_code, message, job_id, attempt))

    def job_note(self, job_id: int, outcome: JobOutcome, message: str) -> None:
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
        rows = self._rows(
            "SELECT f.*, j.status::text AS state, j.abort_requested FROM farm_jobs f "
            f"LEFT JOIN procrastinate_jobs j ON j.id = f.job_id {clause} ORDER BY f.job_id DESC LIMIT %s",
            (*params, limit))
        for row in rows:  # None: procrastinate's row is gone (a job cancelled while queued)
            row["state"] = JobState(row["state"]) if row["state"] is not None else None
            row["outcome"] = _outcome(row["outcome"])
        return rows

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
    def add_schedule(self, name: str, pool: str, cron: str, request: dict) -> None:
        """Add or replace a schedule; its creator is the session's user (a right of farm_scheduler)."""
        with self.connect() as db:
            db.execute("INSERT INTO farm_schedules (name, pool, cron, request, created_by) "
                       "VALUES (%s, %s, %s, %s, session_user) "
                       "ON CONFLICT (name) DO UPDATE SET pool = EXCLUDED.pool, cron = EXCLUDED.cron, "
                       "request = EXCLUDED.request, created_by = EXCLUDED.created_by, created_at = now()",
                       (name, pool, cron, json.dumps(request)))

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

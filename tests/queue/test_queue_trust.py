"""The queue's trust boundary through its real parts: a hostile colleague with a database login writes job rows by hand.

A `farm worker` process (PostgreSQL on 127.0.0.1, sshd stand-ins) takes every job
of pool `trust`; the attacks go in as raw procrastinate jobs, the way a client
that is not farm would queue them. Pool `idle` has no worker: its jobs wait.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import textwrap
import time
from pathlib import Path

import psycopg
import pytest
from helpers import farm
from test_queue import FAST, Queue, queue_lab

from farm import resources
from farm.queue.app import ensure_schema, opened
from farm.record.history import History
from farm.util import utc_now

# a minute or more of real PostgreSQL, workers and stand-ins: CI runs it (-m slow locally)
pytestmark = pytest.mark.slow

SECRET = "w0rker-Secret-7f3a"  # the workers' database password: never on a command line or in a log


class TrustQueue(Queue):
    def as_user(self, user: str, password: str | None = None) -> str:
        return re.sub(r"//postgres@", f"//{user}{':' + password if password else ''}@", self.url)

    def sql(self, *statements: str) -> None:
        with psycopg.connect(self.url, autocommit=True) as db:
            for statement in statements:
                db.execute(statement)

    def base_request(self, pool: str) -> dict:
        """A job as farm submit makes it (the digits demo), its files stored."""
        checklist = self.cwd / "plain.yaml"
        checklist.write_text("name: plain\nitems:\n  latency: {metric: p50, max_ms: 10000}\n")
        files = {"model": resources.demo_model(), "data": resources.demo_data(), "checklist": checklist}
        stored = {role: {"sha256": self.store.put_blob(path), "name": Path(path).name} for role, path in files.items()}
        return {"kind": "run", "pool": pool, "files": stored, "options": {"variants": "fp32", "runs": 5, "warmup": 1},
                "submitted_by": "someone@else", "submitted_at": utc_now()}

    def raw_job(self, request: dict, url: str | None = None) -> int:
        """Queue a job as any procrastinate client can: no farm submit, no check."""
        with opened(url or self.url) as app:
            pool = request["pool"]
            return app.configure_task("farm:run", queue=f"farm-pool-{pool}", lock=f"farm-pool:{pool}").defer(**request)


@pytest.fixture(scope="module")
def queue(tmp_path_factory, shared_dir, postgres_server):
    with queue_lab(tmp_path_factory, shared_dir, postgres_server, "trust", """
            standins:
              - {name: trust-1, cores: 1, pools: [trust]}
              - {name: secret-1, cores: 1, pools: [secret]}
              - {name: idle-2, cores: 1, pools: [idle]}
              - {name: roles-1, cores: 1, pools: [roles]}
            """, TrustQueue) as q:
        ensure_schema(q.url)  # as the database's owner
        q.start_worker("trust-a", "trust")
        yield q


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


ABS = Path("/tmp") / f"farm-trust-abs-{os.getpid()}"
MARKER = Path("/tmp") / f"farm-trust-imported-{os.getpid()}"
ATTACKS = {
    "role-traversal": ("files", "../../../../tmp/x", "escaped.txt"),
    "role-absolute": ("files", str(ABS), "escaped.txt"),
    "role-pytest-args": ("files", "pytest-args", "evil_suite.py"),
    "role-inventory": ("files", "inventory", "lab.yaml"),
    "name-traversal": ("name", "model", "../../../escaped.onnx"),
    "kind-config": ("kind", "config", None),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_hand_written_job_outside_the_closed_shape_is_refused_and_writes_nothing_outside_its_folder(queue, attack):
    how, key, name = ATTACKS[attack]
    request = queue.base_request("trust")
    evil = queue.cwd / f"evil-{attack}"
    evil.write_text(f"open({str(MARKER)!r}, 'w').write('imported')\n" if key == "pytest-args" else textwrap.dedent("""
        boards:
          - {name: evil-local, transport: local, pools: [trust]}
        """))
    inventory_before = _sha(queue.cwd / "lab.yaml")
    if how == "files":
        request["files"][key] = {"sha256": queue.store.put_blob(evil), "name": name}
    elif how == "name":
        request["files"][key]["name"] = name
    else:
        request["kind"] = key
    job = queue.raw_job(request)
    row = queue.wait_done(job)

    folder = (queue.cwd / "out-trust-a" / ".queue" / f"job-{job}").resolve()
    assert (row["state"], row["outcome"], row["exit_code"]) == ("failed", "bad input", 2), row
    assert "refused" in row["message"], row["message"]
    if how == "files":
        target = (folder / key / name).resolve()
        assert not target.exists() or target.is_relative_to(folder), target
    if how == "name":
        assert not (folder / key / name).resolve().exists()
    assert not ABS.exists() and not MARKER.exists()
    outside = [p for p in queue.cwd.parent.rglob("escaped*") if not p.resolve().is_relative_to(folder)]
    assert outside == []
    assert _sha(queue.cwd / "lab.yaml") == inventory_before  # the worker's own inventory
    assert not (queue.cwd / "out-trust-a" / row["run_id"]).exists()  # no run at all: nothing judged, nothing passed


def test_a_plain_hand_written_job_still_runs(queue):
    row = queue.wait_done(queue.raw_job(queue.base_request("trust")))
    assert (row["state"], row["outcome"]) == ("succeeded", "passed"), (row, queue.logs())


def test_the_history_password_is_on_no_command_line_and_in_no_log_and_still_reaches_the_database(queue):
    """The worker logs in with a password (scram, not trust) and records its runs in the queue's database."""
    with psycopg.connect(queue.url, autocommit=True) as db:
        hba = Path(db.execute("SHOW hba_file").fetchone()[0])
        db.execute(f"CREATE ROLE trust_lab LOGIN SUPERUSER PASSWORD '{SECRET}'")
    hba.write_text("host all trust_lab 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
    queue.sql("SELECT pg_reload_conf()")
    worker_url = queue.as_user("trust_lab", SECRET)
    with pytest.raises(psycopg.OperationalError):  # the password is really asked for
        psycopg.connect(queue.as_user("trust_lab", "wrong"), connect_timeout=5).close()
    worker = queue.start_worker("secret-a", "secret", url=worker_url)

    request = queue.base_request("secret")
    request["options"]["runs"] = 1000  # long enough to look at its child
    job = queue.raw_job(request)
    queue.wait_until(job, lambda r: r["state"] == "doing")
    deadline, children = time.monotonic() + 60, []
    while time.monotonic() < deadline and not children:
        children = [int(c) for t in Path(f"/proc/{worker.pid}/task").iterdir()
                    for c in (t / "children").read_text().split()]
        time.sleep(0.05)
    assert children, queue.logs()
    argv = Path(f"/proc/{children[0]}/cmdline").read_bytes().split(b"\0")
    assert any(a.startswith(b"--history=postgresql://trust_lab@") for a in argv), argv
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert SECRET not in ps and SECRET.encode() not in b" ".join(argv)
    environ = Path(f"/proc/{children[0]}/environ").read_bytes().split(b"\0")
    assert SECRET.encode() not in b" ".join(environ)  # the worker's FARM_QUEUE stays with the worker
    assert any(e.startswith(b"PGPASSFILE=") for e in environ), environ
    row = queue.wait_done(job)

    log = queue.cwd / "out-secret-a" / ".queue" / f"job-{job}" / "attempt-1.log"
    assert log.stat().st_mode & 0o777 == 0o600
    assert SECRET not in log.read_text(errors="replace")
    assert not list(log.parent.glob(".pgpass"))  # the password file went with the child
    assert row["outcome"] == "passed", log.read_text(errors="replace")[-2000:]
    assert History(queue.url).load_run(row["run_id"]).run_id == row["run_id"]  # it logged in, password off argv


def test_farm_config_and_error_messages_print_database_urls_without_their_password(queue, tmp_path):
    shown = farm("config", cwd=tmp_path, env={"FARM_HISTORY": f"postgresql://farm:{SECRET}@db.lab:5432/farm"})
    assert shown.returncode == 0 and "postgresql://farm:***@db.lab:5432/farm" in shown.stdout, shown.stdout
    for url in (f"postgresql://127.0.0.1:1/farm?password={SECRET}", f"postgresql://farm:{SECRET}@127.0.0.1:1/farm",
                f"mysql://farm:{SECRET}@127.0.0.1/farm"):
        proc = farm("queue", "--queue", url, cwd=tmp_path)
        assert proc.returncode in (1, 2) and "queue" in proc.stderr, proc.stderr
        assert SECRET not in proc.stderr + proc.stdout, proc.stderr


# -- roles: who may do what ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def roles(queue):
    made = queue.farm("queue", "roles")
    assert made.returncode == 0, made.stderr
    submitters = ("trust_alice", "trust_bob", "trust_carol")
    queue.sql(*(f"CREATE ROLE {who} LOGIN IN ROLE farm_submitter" for who in submitters),
              "CREATE ROLE trust_worker LOGIN IN ROLE farm_worker")
    return queue


def _as(queue: Queue, user: str, *args: str) -> subprocess.CompletedProcess:
    return farm(*args, "--queue", queue.as_user(user), cwd=queue.cwd, env=queue.env)


def test_submitted_by_is_the_database_sessions_user_not_the_jobs_word(roles):
    submitted = _as(roles, "trust_alice", "submit", "--pool", "idle", *FAST)
    assert submitted.returncode == 0, submitted.stderr
    job = int(submitted.stdout.split()[1].rstrip(":"))
    forged = roles.raw_job({**roles.base_request("idle"), "submitted_by": "trust_carol"}, roles.as_user("trust_bob"))
    assert roles.job(job)["submitted_by"] == "trust_alice"
    assert roles.job(forged)["submitted_by"] == "trust_bob"
    listing = _as(roles, "trust_bob", "queue", "--pool", "idle")
    assert listing.returncode == 0 and f"{job:<6}idle" in listing.stdout  # a submitter sees every job


def test_a_submitter_cannot_cancel_anothers_job_or_add_a_schedule_unless_granted(roles):
    submitted = _as(roles, "trust_alice", "submit", "--pool", "idle", *FAST)
    job = int(submitted.stdout.split()[1].rstrip(":"))

    refused = _as(roles, "trust_bob", "cancel", str(job))
    assert refused.returncode == 1 and "submitted by trust_alice" in refused.stderr, refused.stderr
    assert roles.job(job)["state"] == "todo"
    with pytest.raises(psycopg.errors.InsufficientPrivilege):  # nor behind farm's back
        with psycopg.connect(roles.as_user("trust_bob"), autocommit=True) as db:
            db.execute("UPDATE procrastinate_jobs SET status = 'cancelled' WHERE id = %s", (job,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        with psycopg.connect(roles.as_user("trust_bob"), autocommit=True) as db:
            db.execute("UPDATE farm_jobs SET submitted_by = 'trust_bob' WHERE job_id = %s", (job,))
    own = _as(roles, "trust_alice", "cancel", str(job))
    assert own.returncode == 0 and "cancelled before it started" in own.stdout, own.stderr
    other = int(_as(roles, "trust_alice", "submit", "--pool", "idle", *FAST).stdout.split()[1].rstrip(":"))
    roles.sql("GRANT farm_canceller TO trust_carol")
    granted = _as(roles, "trust_carol", "cancel", str(other))
    assert granted.returncode == 0 and "cancelled before it started" in granted.stdout, granted.stderr

    schedule = ("schedule", "nightly", "--pool", "idle", "--cron", "0 3 * * *", "--name", "bobs", *FAST)
    refused = _as(roles, "trust_bob", *schedule)
    assert refused.returncode == 1 and "permission denied" in refused.stderr, refused.stderr
    roles.sql("GRANT farm_scheduler TO trust_bob")
    added = _as(roles, "trust_bob", *schedule)
    assert added.returncode == 0, added.stderr
    assert {r["name"]: r["created_by"] for r in roles.store.schedules()}["bobs"] == "trust_bob"


def test_a_worker_role_runs_a_submitters_job_and_records_it_in_the_history(roles):
    roles.start_worker("roles-a", "roles", url=roles.as_user("trust_worker"))
    done = _as(roles, "trust_alice", "submit", "--pool", "roles", *FAST, "--wait")
    assert done.returncode == 0 and "passed (exit 0)" in done.stdout, done.stdout + done.stderr + roles.logs()
    job = int(done.stdout.split()[1].rstrip(":"))
    row = roles.job(job)
    assert (row["worker"], row["submitted_by"]) == ("roles-a", "trust_alice")
    assert History(roles.as_user("trust_alice")).load_run(row["run_id"]).run_id == row["run_id"]  # alice reads it

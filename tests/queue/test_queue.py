"""The job queue through its real parts: PostgreSQL on 127.0.0.1, `farm worker` processes, sshd stand-ins.

Pools: east (two stand-ins) is served by two workers, west (one stand-in) by one,
idle (one stand-in) by none, so its jobs wait in the queue for as long as a test needs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psycopg
import pytest
from helpers import farm, wait_for_processes

from farm.queue.app import ensure_schema, opened, tick
from farm.queue.store import Store
from farm.record.history import History

FAST = ("--variants", "fp32", "--runs", "5", "--warmup", "1")
SLOW = ("--variants", "fp32", "--runs", "4000", "--warmup", "1")  # long enough to be stopped midway


class Queue:
    """The lab, its queue and its workers, as a user drives them through the `farm` command."""

    def __init__(self, cwd: Path, url: str, env: dict):
        self.cwd, self.url, self.env = cwd, url, env
        self.store = Store(url)
        self.workers: dict[str, subprocess.Popen] = {}

    def farm(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return farm(*args, "--queue", self.url, cwd=self.cwd, env=self.env, timeout=timeout)

    def start_worker(self, name: str, *pools: str, url: str | None = None) -> subprocess.Popen:
        """A worker whose queue URL (a password and all) is in its environment, as the README shows it."""
        argv = [sys.executable, "-m", "farm", "worker", "--inventory", "lab.yaml", "--name", name,
                "--out", f"out-{name}", "--heartbeat-s", "1", "--stalled-after-s", "4", "--poll-s", "0.3"]
        for pool in pools:
            argv += ["--pool", pool]
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("FARM_", "PG"))}
        log = open(self.cwd / f"worker-{name}.log", "ab")
        self.workers[name] = subprocess.Popen(argv, cwd=self.cwd, env={**clean, **self.env,
                                                                       "FARM_QUEUE": url or self.url},
                                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self.workers[name]

    def submit(self, pool: str, *args: str) -> int:
        proc = self.farm("submit", "--pool", pool, *args)
        assert proc.returncode == 0, proc.stderr
        return int(proc.stdout.split()[1].rstrip(":"))

    def job(self, job_id: int) -> dict:
        return self.store.jobs(job_id=job_id, limit=1)[0]

    def wait_until(self, job_id: int, check, timeout_s: float = 240) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            row = self.job(job_id)
            if check(row):
                return row
            time.sleep(0.3)
        raise AssertionError(f"job {job_id} never got there: {row}; worker logs:\n{self.logs()}")

    def wait_done(self, job_id: int, timeout_s: float = 240) -> dict:
        return self.wait_until(job_id, lambda r: r["state"] in ("succeeded", "failed", "cancelled", "aborted"),
                               timeout_s)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-1500:] for p in self.cwd.glob("worker-*.log"))


@contextmanager
def queue_lab(tmp_path_factory, shared_dir, postgres_server, name: str, standins: str,
              kind: type[Queue] = Queue) -> Iterator[Queue]:
    """Stand-ins up (lab.yaml), a fresh database; every worker killed and the stand-ins down afterwards."""
    cwd = tmp_path_factory.mktemp(name)
    (cwd / "lab.yaml").write_text(textwrap.dedent(standins))
    env = {"FARM_LAB_DIR": str(shared_dir / f"lab-{name}")}
    up = farm("lab", "up", "--inventory", "lab.yaml", cwd=cwd, env=env)
    assert up.returncode == 0, up.stderr
    q = kind(cwd, postgres_server(f"farm_{name}"), env)
    try:
        yield q
    finally:
        for worker in q.workers.values():
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
        farm("lab", "down", cwd=cwd, env=env)


@pytest.fixture(scope="module")
def queue(tmp_path_factory, shared_dir, postgres_server):
    with queue_lab(tmp_path_factory, shared_dir, postgres_server, "queue", """
            standins:
              - {name: east-1, cores: 1, pools: [east]}
              - {name: east-2, cores: 1, pools: [east]}
              - {name: west-1, cores: 1, pools: [west]}
              - {name: idle-1, cores: 1, pools: [idle]}
            """) as q:
        q.start_worker("east-a", "east")
        q.start_worker("east-b", "east")
        q.start_worker("west-a", "west")
        ensure_schema(q.url)  # the workers are still starting: the tests read the queue before any submit
        yield q


@pytest.mark.slow  # two workers and four queued runs, about a minute (CI runs it)
def test_workers_take_only_their_pools_jobs_and_a_pools_jobs_run_one_after_another(queue):
    east = [queue.submit("east", *FAST) for _ in range(3)]
    west = queue.submit("west", *FAST)
    rows = {job: queue.wait_done(job) for job in [*east, west]}

    assert {rows[j]["worker"] for j in east} <= {"east-a", "east-b"}, rows
    assert rows[west]["worker"] == "west-a"
    assert all(r["state"] == "succeeded" and r["outcome"] == "passed" for r in rows.values()), rows
    spans = sorted((rows[j]["started_at"], rows[j]["finished_at"]) for j in east)
    assert all(earlier[1] <= later[0] for earlier, later in zip(spans, spans[1:])), spans  # never two at once
    history = History(queue.url)
    for job in east:
        run = history.load_run(rows[job]["run_id"])
        assert [b.status for b in run.boards] == ["ok", "ok"], [b.error for b in run.boards]  # no `busy`


@pytest.mark.slow  # two queued runs followed to their end, half a minute (CI runs it)
def test_submit_wait_exits_with_the_runs_code(queue):
    passed = queue.farm("submit", "--pool", "west", *FAST, "--wait")
    assert passed.returncode == 0, passed.stderr
    assert "passed (exit 0)" in passed.stdout
    tight = queue.cwd / "tight.yaml"
    tight.write_text("name: tight\nitems:\n  latency: {metric: p50, max_ms: 0.00001}\n")
    failed = queue.farm("submit", "--pool", "west", *FAST, "--checklist", str(tight), "--wait")
    assert failed.returncode == 1, failed.stderr
    assert "failed (exit 1)" in failed.stdout


def test_a_run_that_cannot_be_judged_is_refused_at_submit_and_nothing_is_queued(queue):
    before = len(queue.store.jobs(limit=1000))
    proc = queue.farm("submit", "--pool", "west", "--model", "models-missing.onnx", "--data", "x.npz")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "models-missing.onnx" in proc.stderr and "Traceback" not in proc.stderr
    assert len(queue.store.jobs(limit=1000)) == before


def test_fetch_brings_back_a_queued_runs_files(queue, tmp_path):
    job = queue.submit("west", *FAST)
    row = queue.wait_done(job)
    proc = queue.farm("fetch", str(job), "--to", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    got = json.loads((tmp_path / row["run_id"] / "results.json").read_text())
    assert got["run_id"] == row["run_id"]
    assert (tmp_path / row["run_id"] / "report.html").stat().st_size > 1000
    listing = queue.farm("queue", "--pool", "west")
    assert f"{job:<6}west" in listing.stdout and "west-a" in listing.stdout


def test_cancel_removes_a_queued_job_and_stops_a_running_one_keeping_what_it_collected(queue):
    waiting = queue.submit("idle", *FAST)
    proc = queue.farm("cancel", str(waiting))
    assert proc.returncode == 0 and "cancelled before it started" in proc.stdout, proc.stdout + proc.stderr
    assert queue.job(waiting)["state"] == "cancelled"

    running = queue.submit("west", *SLOW)
    queue.wait_until(running, lambda r: r["state"] == "doing")
    # The agent measuring on the board, not a fixed sleep: under load a `farm run` child 4 s old was still
    # starting, and a SIGTERM then found no handler (exit -15 instead of farm's stop).
    assert wait_for_processes("min-runs 4000", 120), "the slow job's agent never started"
    proc = queue.farm("cancel", str(running))
    assert "asked to stop" in proc.stdout, proc.stdout + proc.stderr
    row = queue.wait_done(running, timeout_s=90)
    assert (row["state"], row["outcome"], row["exit_code"]) == ("aborted", "cancelled", 143), row
    kept = json.loads(Path(queue.cwd / "out-west-a" / row["run_id"] / "results.json").read_text())
    assert kept["run_id"] == row["run_id"]
    assert [b["status"] for b in kept["boards"]] == ["cancelled"]  # stopped, and said so
    assert "results.json" in queue.store.run_files(row["run_id"])


def test_a_job_whose_model_blob_is_gone_fails_with_a_clear_error(queue):
    job = queue.submit("idle", *FAST)
    sha = queue.job(job)["request"]["files"]["model"]["sha256"]
    with psycopg.connect(queue.url, autocommit=True) as db:
        db.execute("DELETE FROM farm_blobs WHERE sha256 = %s", (sha,))
    queue.start_worker("idle-a", "idle")
    row = queue.wait_done(job)
    assert (row["state"], row["outcome"], row["exit_code"]) == ("failed", "bad input", 2), row
    assert f"blob {sha[:16]}... is not in the queue's store" in row["message"]


@pytest.mark.slow  # a worker killed and a job retried, most of a minute (CI runs it)
def test_a_worker_killed_mid_job_hands_it_to_another_and_the_history_keeps_one_run(queue):
    job = queue.submit("east", *SLOW)
    first = queue.wait_until(job, lambda r: r["state"] == "doing")
    time.sleep(4)  # measuring
    queue.workers[first["worker"]].kill()  # SIGKILL: its run stops with it (parent-death signal), boards freed

    row = queue.wait_done(job, timeout_s=300)
    assert row["state"] == "succeeded" and row["attempt"] == 2, row
    assert row["worker"] != first["worker"]
    runs = [r for r in History(queue.url).runs(limit=1000) if r["run_id"] == row["run_id"]]
    assert len(runs) == 1
    kept = History(queue.url).load_run(row["run_id"])
    assert [b.status for b in kept.boards] == ["ok", "ok"]  # the retry's whole run, not the killed one's
    queue.start_worker(first["worker"], "east")  # back for the tests after this one


def test_a_due_schedule_is_queued_once_per_minute_and_not_otherwise(queue):
    proc = queue.farm("schedule", "nightly", "--pool", "idle", "--cron", "0 2 * * *", *FAST)
    assert proc.returncode == 0, proc.stderr
    bad = queue.farm("schedule", "nightly", "--pool", "idle", "--cron", "0 25 * * *")
    assert bad.returncode == 2 and "--cron" in bad.stderr
    store = ensure_schema(queue.url)
    due = int(dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.timezone.utc).timestamp())
    with opened(queue.url) as app:
        queued = tick(app, store, due)
        assert len(queued) == 1 and tick(app, store, due) == []
        assert tick(app, store, due + 60) == []
    row = queue.job(queued[0])
    assert row["request"]["kind"] == "nightly" and row["request"]["pool"] == "idle"
    assert row["submitted_by"] == "schedule nightly-idle (postgres), queued by postgres"  # the sessions' users
    queue.farm("cancel", str(queued[0]))


def test_a_bad_board_gets_no_queued_job_and_a_pool_all_bad_fails_its_job_at_once_with_the_reason(queue):
    history = History(queue.url)  # the workers' history: every controller and worker reads board health there
    history.set_health("east-1", "bad", "health check: unreachable")
    history.set_health("west-1", "bad", "health check: agent-error")
    try:
        east = queue.submit("east", *FAST)
        followed = queue.farm("submit", "--pool", "west", *FAST, "--wait")  # what its submitter sees
        west = int(followed.stdout.split()[1].rstrip(":"))
        done = queue.wait_done(east)
        assert done["state"] == "succeeded", done
        assert [b.name for b in history.load_run(done["run_id"]).boards] == ["east-2"]
        east_log = next((queue.cwd / f"out-{done['worker']}" / ".queue" / f"job-{east}").glob("attempt-*.log"))
        assert "east-1: left out: bad since" in east_log.read_text()
        failed = queue.wait_done(west)
        assert failed["outcome"] == "failed" and failed["exit_code"] == 1, failed
        log = next((queue.cwd / "out-west-a" / ".queue" / f"job-{west}").glob("attempt-*.log")).read_text()
        assert "every selected board is bad or retired (west-1 bad since" in log, log[-1500:]
        assert (failed["finished_at"] - failed["started_at"]).total_seconds() < 60  # at once, not at a timeout
        # the job's own status says which boards and why, not only its attempt's log
        why = "every selected board is bad or retired (west-1 bad since"
        assert why in failed["message"] and "health check: agent-error" in failed["message"], failed
        assert followed.returncode == 1, followed.stdout + followed.stderr[-1500:]
        assert f"job {west}: failed (exit 1): farm: {why}" in followed.stdout, followed.stdout
        listed = next(line for line in queue.farm("queue", "--pool", "west").stdout.splitlines()
                      if line.startswith(f"{west} "))
        assert why in listed and "health check: agent-error" in listed, listed
    finally:
        history.set_health("east-1", "good", "restored by the test")
        history.set_health("west-1", "good", "restored by the test")

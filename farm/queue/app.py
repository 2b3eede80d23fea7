"""procrastinate on farm's PostgreSQL: one queue and one lock per pool, the schedules as a periodic task.

A job is one farm run (or nightly) for one pool. Its queue is the pool's, so a
worker takes only the jobs of the pools it serves; its lock is the pool's, so jobs
for one pool run one after another, never two at once on the same boards (no
`busy`). Delivery is at least once: a job whose worker died (its heartbeat stopped)
is put back once for another worker of the pool, under the same run id, and the
history keeps one run per id (the later attempt's). The run id and who submitted the
job are the database's (farm_job_submitted, store.SCHEMA), never the job's word.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from contextlib import contextmanager
from typing import Any, ContextManager, Iterator

import procrastinate
from procrastinate.jobs import Status

from farm.errors import ConfigError
from farm.queue.execute import execute
from farm.queue.request import lock_of, queue_of
from farm.queue.store import ROLES, SCHEMA, SCHEMA_MARK, Store
from farm.record.history import TABLES, History
from farm.statuses import JobOutcome

RUN_TASK, SCHEDULE_TASK = "farm:run", "farm:schedules"
SCHEDULE_QUEUE = "farm-schedules"
MAX_ATTEMPTS = 2  # the first, and one retry on another worker when the first one's worker died
log = logging.getLogger(__name__)


# The tasks, declared once; bound to a database for a while with `bound` (one database per process at a time).
tasks = procrastinate.App(connector=procrastinate.PsycopgConnector())


def bound(url: str) -> ContextManager[procrastinate.App]:
    return tasks.replace_connector(procrastinate.PsycopgConnector(conninfo=url))


@contextmanager
def opened(url: str) -> Iterator[procrastinate.App]:
    """The app on this database, open for synchronous use (submit, cancel, schedule)."""
    with bound(url) as app, app.open():
        yield app


def ensure_schema(url: str) -> Store:
    """procrastinate's tables and farm's, created on first use of a database (by a role that may create them)."""
    store = Store(url)
    with store.connect() as db:  # one at a time: workers starting together would race to create the tables
        if db.execute("SELECT to_regprocedure(%s)", (SCHEMA_MARK,)).fetchone()[0] is not None:
            return store  # made already: a submitter's role need not be able to create anything
        db.execute("SELECT pg_advisory_lock(hashtext('farm-queue-schema'))")
        if db.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()[0] is None:
            with opened(url) as app:
                app.schema_manager.apply_schema()
        db.execute(SCHEMA)
    return store


def defer(app: procrastinate.App, request: dict) -> int:
    """Queue one run for its pool; the job's id (its farm_jobs row is written with it, by the database)."""
    pool = request["pool"]
    return app.configure_task(RUN_TASK, queue=queue_of(pool), lock=lock_of(pool)).defer(**request)


def grant_roles(url: str) -> None:
    """Create the schema, the history's tables and the group roles of docs/queue.md (as the database's owner)."""
    ensure_schema(url)
    History(url)
    history = re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", TABLES)
    with Store(url).connect() as db:
        db.execute(ROLES.replace("{history}", ", ".join(history)))
        for table in history:  # a worker's run creates and indexes them if missing: it must own them
            db.execute(f"ALTER TABLE {table} OWNER TO farm_worker")


@tasks.task(name=RUN_TASK, pass_context=True)
def run(context: procrastinate.JobContext, **request: Any) -> None:
    execute(context, request)


@tasks.periodic(cron="* * * * *", periodic_id="schedules")
@tasks.task(name=SCHEDULE_TASK, queue=SCHEDULE_QUEUE, pass_context=True)
def schedules(context: procrastinate.JobContext, timestamp: int) -> None:
    tick(context.app, context.additional_context["store"], timestamp)


def tick(app: procrastinate.App, store: Store, timestamp: int) -> list[int]:
    """Queue every schedule due at this minute (once, whichever worker ticks)."""
    from croniter import croniter

    when = dt.datetime.fromtimestamp(timestamp, dt.timezone.utc)
    queued = []
    for schedule in store.schedules():
        if not croniter.match(schedule["cron"], when) or not store.claim_due(schedule["name"], timestamp):
            continue
        queued.append(defer(app, {**schedule["request"], "schedule": schedule["name"]}))
    return queued


async def retry_stalled(app: procrastinate.App, store: Store, after_s: float, every_s: float) -> None:
    """Put back, once, each job whose worker stopped beating; give up on one that was retried already."""
    while True:
        await asyncio.sleep(every_s)
        try:
            stalled = await app.job_manager.get_stalled_jobs(task_name=RUN_TASK, seconds_since_heartbeat=after_s)
            for job in stalled:
                if job.attempts + 1 < MAX_ATTEMPTS:
                    await app.job_manager.retry_job(job)
                    log.warning("job %s: its worker stopped beating; queued again for another worker", job.id)
                else:
                    await app.job_manager.finish_job_by_id_async(job.id, status=Status.FAILED, delete_job=False)
                    await asyncio.to_thread(store.job_note, job.id, JobOutcome.FAILED,
                                            f"its worker died on attempt {job.attempts + 1} of {MAX_ATTEMPTS}")
        except Exception as exc:  # another worker retried it first, or the database blinked: next round
            log.warning("stalled-job check: %s", exc)


def cancel(store: Store, job_id: int) -> str:
    """A queued job is removed; a running one is asked to stop (its worker stops the run like Ctrl-C)."""
    rows = store.jobs(job_id=job_id, limit=1)
    if not rows:
        raise ConfigError(f"job {job_id} is not in the queue {store.where}: check the number (farm queue)")
    done = store.cancel(job_id)
    if done == JobOutcome.CANCELLED:
        return f"job {job_id}: cancelled before it started"
    if done == JobOutcome.STOPPING:
        return f"job {job_id}: running on {rows[0]['worker']}; asked to stop (what it collected is kept)"
    return f"job {job_id}: already ended ({rows[0]['state']}, {rows[0]['outcome']}); nothing to cancel"

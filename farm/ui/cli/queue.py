"""`farm worker`, `farm submit`, `farm queue`, `farm cancel`, `farm fetch`, `farm schedule`: runs through the queue."""

from __future__ import annotations

import argparse
import logging
import os
import socket
from pathlib import Path

from farm import resources
from farm.config import options
from farm.config.project import find_project_config
from farm.errors import ConfigError
from farm.util import NAME_RE

log = logging.getLogger(__name__)

# What a submitter chooses; where the boards are, where results go, the run's name and how long to wait
# for a board someone holds outside the queue are the worker's.
WORKER_SIDE = ("inventory", "out", "history", "run-id", "variants-dir", "wait")
# a team's own variants are files on this machine the queue does not carry (yet): `farm run --variant` only
SUBMIT_OPTIONS = tuple(o for o in options.RUN_OPTIONS if o.name not in WORKER_SIDE + ("variant",))
WORKER_OPTIONS = options.SELECTION[:2] + (options.OUT, options.BY_NAME["history"], options.BY_NAME["wait"])
NIGHTLY_DEFAULTS = {"checklist": str(resources.checklist("dms-nightly")), "rounds": 3}


def _resolve(args: argparse.Namespace, which: tuple, defaults: dict | None = None) -> dict[str, options.Setting]:
    return options.resolve(lambda name: getattr(args, name, None), project=find_project_config(),
                           defaults=defaults, options=which)


def _store(args: argparse.Namespace):
    from farm.queue.store import Store

    url = _resolve(args, options.QUEUE_OPTIONS)["queue"].value
    if not url:
        raise ConfigError("no queue given: --queue postgresql://..., FARM_QUEUE, or queue in [tool.farm]")
    return Store(url)


def _request(args: argparse.Namespace, store, kind: str) -> dict:
    defaults = NIGHTLY_DEFAULTS if kind == "nightly" else None
    found = _resolve(args, options.RUN_OPTIONS, defaults)
    settings = options.run_settings(found)
    if settings.user_variants:
        raise ConfigError(f"variant ({found['variant'].source}): the queue does not carry a team's own variants; "
                          "judge them with farm run --variant on the boards' side")
    from farm.queue.request import FORWARDED
    from farm.queue.submit import build_request

    forwarded = {name: found[name].value for name in FORWARDED if found[name].value not in (None, [], "")}

    return build_request(settings, kind, found["pool"].value, store, forwarded)


def cmd_submit(args: argparse.Namespace) -> int:
    from farm.queue.app import defer, ensure_schema, opened
    from farm.queue.submit import exit_code, follow

    store = _store(args)
    request = _request(args, store, "nightly" if args.nightly else "run")
    ensure_schema(store.url)
    with opened(store.url) as app:
        job_id = defer(app, request)
    print(f"job {job_id}: run {store.jobs(job_id=job_id, limit=1)[0]['run_id']} queued for pool {request['pool']}")
    if not args.follow:
        return 0
    row = follow(store, job_id)
    code = exit_code(row)
    print(f"job {job_id}: {row['outcome'] or row['state']} (exit {code})" + (f": {row['message']}" if row["message"]
                                                                            else ""))
    return code


def cmd_worker(args: argparse.Namespace) -> int:
    from farm.config.inventory import load_inventory
    from farm.queue.execute import WorkerConfig
    from farm.queue.worker import serve

    store = _store(args)
    from farm.board.lease import TTL_S

    # A job waits for its boards past a dead holder's lease (a worker killed with its run): nobody is at a
    # terminal to retry it by hand.
    found = _resolve(args, WORKER_OPTIONS, defaults={"wait": TTL_S + 30.0})
    inventory = Path(found["inventory"].value or resources.standin_inventory()).absolute()
    pools = found["pool"].value
    if not pools:
        raise ConfigError("farm worker serves one or more pools: give --pool P (repeatable)")
    loaded = load_inventory(inventory)
    known = ({p for b in loaded.boards for p in b.pools}
             | {p for s in loaded.standins for p in s.values.get("pools", ())})
    if unknown := [p for p in pools if p not in known]:
        raise ConfigError(f"{inventory}: no board of pool {unknown[0]!r} (pools here: {', '.join(sorted(known))})")
    history = found["history"].value or store.url
    name = args.name or f"{socket.gethostname()}-{os.getpid()}"
    config = WorkerConfig(name, store.url, inventory, Path(found["out"].value).absolute(), history,
                          found["wait"].value, tuple(pools))
    log.info(f"worker {name}: pools {', '.join(pools)} of {inventory}; queue {store.where}")
    serve(config, pools, heartbeat_s=args.heartbeat_s, stalled_after_s=args.stalled_after_s, poll_s=args.poll_s)
    return 0


def cmd_queue(args: argparse.Namespace) -> int:
    from farm.queue.store import pool_counts

    rows = _store(args).jobs(pool=args.pool, limit=args.limit)
    for pool, count in sorted(pool_counts(rows).items()):
        print(f"pool {pool}: {count['queued']} queued, {count['running']} running, {count['done']} done")
    print(f"{'job':<6}{'pool':<12}{'state':<11}{'outcome':<11}{'run':<26}{'submitted by':<28}{'worker':<20}"
          f"{'since':<21}why")
    for row in rows:
        since = row["finished_at"] or row["started_at"] or row["submitted_at"]
        print(f"{row['job_id']:<6}{row['pool']:<12}{row['state'] or '-':<11}{row['outcome'] or '-':<11}"
              f"{row['run_id']:<26}{row['submitted_by'] or '-':<28}{row['worker'] or '-':<20}"
              f"{since:%Y-%m-%d %H:%M:%S}" + (f"  {row['message']}" if row["message"] else ""))
    if not rows:
        print("no job" + (f" for pool {args.pool}" if args.pool else ""))
    return 0


def cmd_queue_roles(args: argparse.Namespace) -> int:
    from farm.queue.app import grant_roles

    store = _store(args)
    grant_roles(store.url)
    print(f"queue {store.where}: roles farm_submitter, farm_worker, farm_canceller, farm_scheduler ready; give each "
          "person and worker its own login role, e.g. CREATE ROLE alice LOGIN PASSWORD '...' IN ROLE farm_submitter; "
          "CREATE ROLE lab_east LOGIN PASSWORD '...' IN ROLE farm_worker (docs/queue.md)")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from farm.queue.app import cancel

    print(cancel(_store(args), args.job))
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    store = _store(args)
    run_id = args.run
    if run_id.isdigit():
        rows = store.jobs(job_id=int(run_id), limit=1)
        if not rows:
            raise ConfigError(f"job {run_id} is not in the queue {store.where}: check the number (farm queue)")
        run_id = rows[0]["run_id"]
    files = store.run_files(run_id)
    if not files:
        raise ConfigError(f"run {run_id}: no files in the queue {store.where} (not run yet, or not a queued run)")
    from farm.record.rundir import run_file_problem

    if not NAME_RE.match(run_id):
        raise ConfigError(f"run id {run_id!r}: expected letters, digits, '.', '_' or '-'")
    inside = Path(args.to).resolve()
    targets = {}
    for name, sha in sorted(files.items()):  # every row checked before anything is written
        problem = run_file_problem(name)
        target = (inside / run_id / name).resolve()
        if problem is None and not target.is_relative_to(inside):
            problem = f"it resolves to {target}, outside --to {inside} (a link on the way)"
        if problem:
            raise ConfigError(f"queue {store.where}: run {run_id}, file row {name!r}: {problem}; nothing fetched "
                              "(the row was not written by a farm worker: remove it from farm_run_files)")
        targets[target] = sha
    for target, sha in targets.items():
        print(store.get_blob(sha, target))
    return 0


def cmd_schedule_nightly(args: argparse.Namespace) -> int:
    from croniter import croniter

    from farm.queue.app import ensure_schema

    if not croniter.is_valid(args.cron):
        raise ConfigError(f"--cron {args.cron!r}: expected a cron expression of five fields, e.g. '0 2 * * *'")
    name = args.name or f"nightly-{(args.pool or ['?'])[0]}"
    if not NAME_RE.match(name):
        raise ConfigError(f"--name {name!r}: expected letters, digits, '.', '_' or '-'")
    store = _store(args)
    request = _request(args, store, "nightly")
    ensure_schema(store.url)
    store.add_schedule(name, request["pool"], args.cron, request)
    print(f"schedule {name}: farm nightly on pool {request['pool']} at '{args.cron}' (UTC), "
          "run by a worker of the pool")
    return 0


def cmd_schedule_list(args: argparse.Namespace) -> int:
    rows = _store(args).schedules()
    for row in rows:
        print(f"{row['name']:<24}{row['pool']:<12}{row['cron']:<16}{row['created_by'] or '-'}")
    if not rows:
        print("no schedule")
    return 0


def cmd_schedule_remove(args: argparse.Namespace) -> int:
    if not _store(args).remove_schedule(args.name):
        raise ConfigError(f"no schedule named {args.name!r} (farm schedule list)")
    print(f"schedule {args.name} removed")
    return 0


def _queue_option(parser) -> None:
    options.add_to_argparse(parser, options.QUEUE_OPTIONS)


def register(sub) -> None:
    submit = sub.add_parser("submit", help="queue a run for a pool; a worker of the pool runs it")
    options.add_to_argparse(submit, SUBMIT_OPTIONS)
    _queue_option(submit)
    submit.add_argument("--nightly", action="store_true", help="a nightly (baseline regression) instead of a run")
    submit.add_argument("--wait", dest="follow", action="store_true",
                        help="follow the job to its end and exit with the run's code")
    submit.set_defaults(func=cmd_submit)

    worker = sub.add_parser("worker", help="take the jobs of some pools and run them on this machine's boards")
    options.add_to_argparse(worker, WORKER_OPTIONS)
    _queue_option(worker)
    worker.add_argument("--name", help="this worker's name in `farm queue` (default host-pid)")
    worker.add_argument("--heartbeat-s", type=float, default=10.0, help="seconds between the worker's heartbeats")
    worker.add_argument("--stalled-after-s", type=float, default=30.0,
                        help="a worker silent this long is dead: its job goes to another worker (once)")
    worker.add_argument("--poll-s", type=float, default=2.0, help="seconds between looks for new jobs and cancels")
    worker.set_defaults(func=cmd_worker)

    queue = sub.add_parser("queue", help="queued, running and done jobs per pool")
    _queue_option(queue)
    queue.add_argument("--pool", help="only this pool")
    queue.add_argument("--limit", type=int, default=30)
    queue.set_defaults(func=cmd_queue)
    roles = queue.add_subparsers(dest="action").add_parser(
        "roles", help="create the queue's schema and its group roles: submitter, worker, canceller, scheduler "
                      "(as the database's owner)")
    _queue_option(roles)
    roles.set_defaults(func=cmd_queue_roles)

    cancel = sub.add_parser("cancel", help="remove a queued job, or stop a running one like Ctrl-C")
    _queue_option(cancel)
    cancel.add_argument("job", type=int)
    cancel.set_defaults(func=cmd_cancel)

    fetch = sub.add_parser("fetch", help="results.json, junit.xml and report.html of a queued run")
    _queue_option(fetch)
    fetch.add_argument("run", help="run id, or job number")
    fetch.add_argument("--to", default="results", help="folder: files go to <to>/<run-id>/ (default results)")
    fetch.set_defaults(func=cmd_fetch)

    schedule = sub.add_parser("schedule", help="periodic runs, queued by the workers")
    actions = schedule.add_subparsers(dest="action", required=True)
    nightly = actions.add_parser("nightly", help="queue `farm nightly` for a pool on a cron schedule (UTC)")
    options.add_to_argparse(nightly, SUBMIT_OPTIONS)
    _queue_option(nightly)
    nightly.add_argument("--cron", required=True, help="e.g. '0 2 * * *' (02:00 UTC)")
    nightly.add_argument("--name", help="the schedule's name (default nightly-<pool>); the same name replaces it")
    nightly.set_defaults(func=cmd_schedule_nightly)
    listing = actions.add_parser("list", help="the schedules")
    _queue_option(listing)
    listing.set_defaults(func=cmd_schedule_list)
    remove = actions.add_parser("remove", help="remove a schedule")
    _queue_option(remove)
    remove.add_argument("name")
    remove.set_defaults(func=cmd_schedule_remove)

"""`farm worker`: take the jobs of some pools and run them on this machine's boards, until stopped."""

from __future__ import annotations

import asyncio

from farm.queue.app import SCHEDULE_QUEUE, bound, ensure_schema, retry_stalled
from farm.queue.execute import WorkerConfig
from farm.queue.request import queue_of


async def _serve(config: WorkerConfig, pools: list[str], heartbeat_s: float, stalled_after_s: float,
                 poll_s: float) -> None:
    store = await asyncio.to_thread(ensure_schema, config.queue_url)
    with bound(config.queue_url) as app:
        async with app.open_async():
            watchdog = asyncio.create_task(retry_stalled(app, store, stalled_after_s,
                                                         every_s=max(1.0, stalled_after_s / 3)))
            try:
                await app.run_worker_async(
                    queues=[queue_of(p) for p in pools] + [SCHEDULE_QUEUE], name=config.name, concurrency=1,
                    additional_context={"config": config, "store": store}, update_heartbeat_interval=heartbeat_s,
                    stalled_worker_timeout=stalled_after_s, fetch_job_polling_interval=poll_s,
                    abort_job_polling_interval=poll_s)
            finally:
                watchdog.cancel()


def serve(config: WorkerConfig, pools: list[str], *, heartbeat_s: float = 10.0, stalled_after_s: float = 30.0,
          poll_s: float = 2.0) -> None:
    """Run jobs until SIGINT / SIGTERM: the worker takes no new job and lets the running one end first
    (procrastinate's graceful stop). Killed instead, its run stops at once (a parent-death signal) and
    the job goes to another worker of the pool once this one's heartbeat is stale."""
    asyncio.run(_serve(config, pools, heartbeat_s, stalled_after_s, poll_s))

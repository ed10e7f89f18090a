"""Background jobs: a registry of interval jobs and the one scheduler `serve` starts.

Each job is a plain function of a JobContext that opens its own connection, so tests call
it directly. Retry state lives in our tables, never in the scheduler: its job store stays in
memory and the fixed jobs are added again at every start.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from . import db as storage
from .config import Config
from .services import idempotency

log = logging.getLogger("sellix_lite.jobs")


@dataclass(frozen=True)
class JobContext:
    """What a job run needs: the configuration and a way to open the database."""

    config: Config
    secret_key: str

    def connect(self):
        return storage.connect(self.config.database_path)


@dataclass(frozen=True)
class Job:
    id: str
    func: Callable[[JobContext], object]
    interval: Callable[[Config], int]  # seconds between runs, from the configuration


JOBS: list[Job] = []
_started = threading.Lock()  # held while a scheduler runs in this process


def job(job_id: str, every: Callable[[Config], int]):
    """Register a function as a job run every `every(config)` seconds."""

    def decorate(func):
        JOBS.append(Job(job_id, func, every))
        return func

    return decorate


@job("purge_idempotency_keys", every=lambda config: 3600)
def purge_idempotency_keys(ctx: JobContext) -> int:
    """Forget idempotency records past their 24-hour retention."""
    db = ctx.connect()
    try:
        return idempotency.purge_expired(db)
    finally:
        db.close()


def build_scheduler(ctx: JobContext) -> BackgroundScheduler:
    """A scheduler with every registered job; late runs are coalesced, never skipped."""
    scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(4)},
                                    timezone="UTC")
    for entry in JOBS:
        seconds = entry.interval(ctx.config)
        # APScheduler skips a run more than 1 s late by default; allow a whole interval.
        scheduler.add_job(_logged(entry), "interval", seconds=seconds, args=[ctx],
                          id=entry.id, replace_existing=True, coalesce=True,
                          max_instances=1, misfire_grace_time=seconds)
    return scheduler


def start_scheduler(ctx: JobContext) -> BackgroundScheduler:
    """Start the process's one scheduler; a second start in the same process is refused."""
    if not _started.acquire(blocking=False):
        raise RuntimeError("a scheduler is already running in this process")
    scheduler = build_scheduler(ctx)
    scheduler.start()
    return scheduler


def stop_scheduler(scheduler: BackgroundScheduler) -> None:
    """Wait for running jobs to finish, then stop."""
    scheduler.shutdown(wait=True)
    _started.release()


def _logged(entry: Job):
    def run(ctx: JobContext):
        try:
            entry.func(ctx)
        except Exception:
            log.exception("job %s failed; it runs again at its next interval", entry.id)

    run.__name__ = entry.id
    return run

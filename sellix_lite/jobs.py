"""Background jobs: a registry of interval jobs and the one scheduler `serve` starts.

Each job is a plain function of a JobContext that opens its own connection, so tests call
it directly. Retry state lives in our tables, never in the scheduler: its job store stays in
memory and the fixed jobs are added again at every start.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor as SenderThreads
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from . import backups, db as storage
from .clock import utcnow
from .config import Config
from .services import (
    emails,
    fulfilment,
    idempotency,
    payments,
    payouts,
    refunds,
    renewals,
    webhook_sender,
)
from .services.links import Links
from .services.scope import MODES

log = logging.getLogger("sellix_lite.jobs")
# How often the backup job checks whether the newest scheduled backup is old enough.
BACKUP_CHECK_SECONDS = 600
# Senders of each mode: eight endpoints that never answer still leave eight for the others.
SENDERS_PER_MODE = 16
# How many endpoints or products a delivery job serves in one run without senders.
INLINE_LIMIT = 16


class SenderPool:
    """Threads that make outbound calls (webhooks, dynamic products) for the jobs, a set per
    mode.

    Live deliveries never wait behind test-mode ones: each mode has its own senders. An
    endpoint holds at most one sender, for at most `timeout_seconds` a call, and a mode has
    SENDERS_PER_MODE of them (threads start only when needed), so endpoints that never
    answer leave senders for the healthy ones. The delivery jobs claim only as many
    deliveries as a mode has idle senders, so a slow endpoint never delays the next tick.
    Work submitted with a key (a dynamic product's id) is `holding` that key until it ends.
    """

    def __init__(self, config: Config, size: int = SENDERS_PER_MODE):
        self._config = config
        self._threads = {mode: SenderThreads(size, thread_name_prefix=f"sender-{mode}")
                         for mode in MODES}
        self._size = size
        self._busy = dict.fromkeys(MODES, 0)
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def running(self) -> bool:
        """False once shutdown began: long-running work should wind down."""
        return not self._stopping.is_set()

    def idle(self, mode: str) -> int:
        with self._lock:
            return self._size - self._busy[mode]

    def holding(self) -> frozenset:
        """The keys of the work under way."""
        with self._lock:
            return frozenset(self._held)

    def submit(self, mode: str, work: Callable, key: str | None = None) -> None:
        """Run `work(db)` on a sender of `mode` with a connection of its own."""
        with self._lock:
            self._busy[mode] += 1
            if key is not None:
                self._held.add(key)
        self._threads[mode].submit(self._run, mode, work, key)

    def _run(self, mode: str, work: Callable, key: str | None) -> None:
        db = storage.connect(self._config.database_path)
        try:
            work(db)
        except Exception:
            log.exception("an outbound call failed unexpectedly; it will be retried")
        finally:
            db.close()
            with self._lock:
                self._busy[mode] -= 1
                self._held.discard(key)

    def wind_down(self) -> None:
        """Ask senders to stop after the call they are making."""
        self._stopping.set()

    def shutdown(self) -> None:
        """Wait for calls under way (each ends at its deadline)."""
        self.wind_down()
        for threads in self._threads.values():
            threads.shutdown(wait=True)


@dataclass(frozen=True)
class JobContext:
    """What a job run needs: the configuration, this process's id and its senders.

    Without a SenderPool (tests calling jobs directly), outbound calls run inline.
    """

    config: Config
    secret_key: str
    boot_id: str = field(default_factory=lambda: secrets.token_hex(8))
    senders: SenderPool | None = None

    def connect(self):
        return storage.connect(self.config.database_path)

    @property
    def links(self) -> Links:
        return Links.for_config(self.config, self.secret_key)

    @contextmanager
    def connection(self):
        db = self.connect()
        try:
            yield db
        finally:
            db.close()


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


def tick(job_id: str, ctx: JobContext):
    """Run the job `job_id` once, now, in this thread; returns what the job returns.

    What the scheduler does every interval, for tests that move the clock instead of waiting.
    """
    entry = next((entry for entry in JOBS if entry.id == job_id), None)
    if entry is None:
        raise KeyError(f"no job {job_id!r}")
    return entry.func(ctx)


@job("purge_idempotency_keys", every=lambda config: 3600)
def purge_idempotency_keys(ctx: JobContext) -> int:
    """Forget idempotency records past their 24-hour retention."""
    with ctx.connection() as db:
        return idempotency.purge_expired(db)


@job("deliver_webhooks", every=lambda config: config.jobs.tick_seconds)
def deliver_webhooks(ctx: JobContext) -> int:
    """Send the webhook deliveries that are due; returns how many were claimed."""
    with ctx.connection() as db:
        def start(submit, limit, mode, keep_going):
            return webhook_sender.deliver_due(db, ctx.config, ctx.boot_id, submit, limit,
                                              keep_going=keep_going, mode=mode)
        return _on_senders(ctx, db, start)


@job("poll_payments", every=lambda config: config.jobs.payment_poll_seconds)
def poll_payments(ctx: JobContext) -> int:
    """Ask BlockPN about open invoices, and fail orders whose checkout was cut off."""
    with ctx.connection() as db:
        payments.fail_stale_pending(db, ctx.links)
        return payments.poll_open_invoices(db, ctx.config, ctx.links)


@job("process_refunds", every=lambda config: config.jobs.tick_seconds)
def process_refunds(ctx: JobContext) -> int:
    """Send new refunds to BlockPN and follow the others to their end."""
    with ctx.connection() as db:
        return refunds.process_due(db, ctx.config, ctx.links)


@job("process_payouts", every=lambda config: config.jobs.tick_seconds)
def process_payouts(ctx: JobContext) -> int:
    """Send queued payouts to BlockPN and follow them until confirmed or failed."""
    with ctx.connection() as db:
        return payouts.process_due(db, ctx.config)


@job("deliver_dynamic", every=lambda config: config.jobs.tick_seconds)
def deliver_dynamic(ctx: JobContext) -> int:
    """Call the URLs of dynamic products for the orders waiting on them."""
    with ctx.connection() as db:
        busy = ctx.senders.holding() if ctx.senders else frozenset()

        def start(submit, limit, mode, keep_going):
            return fulfilment.deliver_dynamic_due(db, ctx.config, ctx.links, submit, limit,
                                                  mode=mode, busy=busy, keep_going=keep_going)
        return _on_senders(ctx, db, start)


def _on_senders(ctx: JobContext, db, start: Callable[..., int]) -> int:
    """Call `start(submit, limit, mode, keep_going)` for each mode with that mode's idle
    senders; returns how many deliveries were claimed. Without a SenderPool (tests calling
    jobs directly) the work runs inline, every mode at once."""
    if ctx.senders is None:
        return start(lambda work, key=None: work(db), INLINE_LIMIT, None, lambda: True)
    claimed = 0
    for mode in MODES:
        if limit := ctx.senders.idle(mode):
            claimed += start(partial(ctx.senders.submit, mode), limit, mode,
                             ctx.senders.running)
    return claimed


@job("renew_subscriptions", every=lambda config: config.jobs.payment_poll_seconds)
def renew_subscriptions(ctx: JobContext) -> int:
    """Open renewal orders for subscriptions ending soon; expire those that ended unpaid."""
    with ctx.connection() as db:
        return renewals.run(db, ctx.config, ctx.links)


@job("send_emails", every=lambda config: config.jobs.tick_seconds)
def send_emails(ctx: JobContext) -> int:
    """Send queued email through SMTP, or write it to the outbox folder."""
    with ctx.connection() as db:
        return emails.send_due(db, ctx.config.email, ctx.config.email.from_,
                               ctx.config.data_dir / "outbox", ctx.boot_id)


@job("back_up_database", every=lambda config: BACKUP_CHECK_SECONDS)
def back_up_database(ctx: JobContext):
    """Make the scheduled backup when one is due (`[backups] every_hours`)."""
    return backups.run_scheduled(ctx.config, utcnow())


def build_scheduler(ctx: JobContext) -> BackgroundScheduler:
    """A scheduler with every registered job; late runs are coalesced, never skipped."""
    scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(4)},
                                    timezone="UTC")
    for entry in JOBS:
        seconds = entry.interval(ctx.config)
        # APScheduler skips a run more than 1 s late by default; allow a whole interval.
        # First run at start, so work left by a previous process resumes at once.
        scheduler.add_job(_logged(entry), "interval", seconds=seconds, args=[ctx],
                          id=entry.id, replace_existing=True, coalesce=True,
                          max_instances=1, misfire_grace_time=seconds,
                          next_run_time=datetime.now(UTC))
    return scheduler


def start_scheduler(ctx: JobContext) -> BackgroundScheduler:
    """Start the process's one scheduler; a second start in the same process is refused."""
    if not _started.acquire(blocking=False):
        raise RuntimeError("a scheduler is already running in this process")
    scheduler = build_scheduler(ctx)
    scheduler.start()
    return scheduler


def stop_scheduler(scheduler: BackgroundScheduler, ctx: JobContext) -> None:
    """Wait for running jobs and outbound calls to finish, then stop."""
    if ctx.senders is not None:
        ctx.senders.wind_down()
    scheduler.shutdown(wait=True)
    if ctx.senders is not None:
        ctx.senders.shutdown()
    _started.release()


def _logged(entry: Job):
    def run(ctx: JobContext):
        try:
            entry.func(ctx)
        except Exception:
            log.exception("job %s failed; it runs again at its next interval", entry.id)

    run.__name__ = entry.id
    return run

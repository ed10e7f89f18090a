"""The job registry and the one scheduler per process."""

from __future__ import annotations

import pytest

from sellix_lite.config import Config
from sellix_lite.jobs import JOBS, JobContext, build_scheduler, start_scheduler, stop_scheduler


def test_registered_jobs():
    assert [job.id for job in JOBS] == [
        "purge_idempotency_keys", "deliver_webhooks", "poll_payments", "process_refunds",
        "process_payouts", "deliver_dynamic", "renew_subscriptions", "send_emails",
        "back_up_database"]


def test_scheduler_holds_every_job_with_safe_defaults(tmp_path):
    scheduler = build_scheduler(JobContext(Config(base_dir=tmp_path), "secret"))
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {job.id for job in JOBS}
    assert jobs["poll_payments"].trigger.interval.total_seconds() == 30
    assert jobs["deliver_webhooks"].trigger.interval.total_seconds() == 1
    purge = jobs["purge_idempotency_keys"]
    assert purge.trigger.interval.total_seconds() == 3600
    assert purge.misfire_grace_time == 3600  # a late run still happens
    assert purge.coalesce and purge.max_instances == 1


def test_only_one_scheduler_per_process(tmp_path):
    ctx = JobContext(Config(base_dir=tmp_path), "secret")
    scheduler = start_scheduler(ctx)
    try:
        with pytest.raises(RuntimeError, match="already running"):
            start_scheduler(ctx)
    finally:
        stop_scheduler(scheduler, ctx)
    assert not scheduler.running
    again = start_scheduler(ctx)  # after a clean stop a new one may start
    stop_scheduler(again, ctx)


def test_tick_runs_a_registered_job_once_by_its_id(tick):
    assert tick("purge_idempotency_keys") == 0  # what the job returns: nothing to forget
    with pytest.raises(KeyError, match="no job 'nope'"):
        tick("nope")

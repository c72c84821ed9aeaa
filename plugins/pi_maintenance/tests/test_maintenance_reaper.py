"""The stuck-job reaper judges a job by its last progress, never by its age."""

from __future__ import annotations

from datetime import timedelta

from pi_maintenance.reaper import reap_stuck_jobs, reap_stuck_vectorization_jobs

from pi_framework.celery_app import create_app
from pi_framework.db.models import JobStatus, WorkspaceVectorization, utcnow

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


def _jobs(database) -> dict[int, WorkspaceVectorization]:
    with database.session() as session:
        return {job.id: job for job in session.query(WorkspaceVectorization)}


def test_silent_jobs_fail_with_reason_and_progressing_jobs_are_kept(pi_env, pi_db, add_job):
    pi_env(PI_STUCK_JOB_TIMEOUT_MINUTES=60)
    silent_running = add_job("ws-silent", JobStatus.RUNNING, created=3 * HOUR, started=3 * HOUR, heartbeat=61 * MINUTE)
    progressing = add_job("ws-progress", JobStatus.RUNNING, created=240 * HOUR, started=240 * HOUR, heartbeat=MINUTE)
    just_inside = add_job("ws-inside", JobStatus.RUNNING, created=2 * HOUR, started=2 * HOUR, heartbeat=59 * MINUTE)
    never_started = add_job("ws-lost", JobStatus.QUEUED, created=2 * HOUR)
    started_no_heartbeat = add_job("ws-nobeat", JobStatus.RUNNING, created=5 * HOUR, started=90 * MINUTE)
    fresh_queued = add_job("ws-new", JobStatus.QUEUED, created=10 * MINUTE)
    old_success = add_job("ws-done", JobStatus.SUCCESS, created=500 * HOUR, started=500 * HOUR, heartbeat=499 * HOUR)
    old_failed = add_job("ws-broken", JobStatus.FAILED, created=500 * HOUR, error="original error")

    assert reap_stuck_vectorization_jobs() == {"reaped": 3}

    jobs = _jobs(pi_db)
    for job_id in (silent_running, never_started, started_no_heartbeat):
        job = jobs[job_id]
        assert job.status == JobStatus.FAILED and job.finished_at is not None
        assert "no progress since" in job.error and "PI_STUCK_JOB_TIMEOUT_MINUTES=60" in job.error
    assert jobs[silent_running].error.startswith("reaped: running job")
    assert jobs[never_started].error.startswith("reaped: queued job")
    heartbeat = jobs[silent_running].progress_at.isoformat()
    assert heartbeat in jobs[silent_running].error, "the message says since when the job was silent"
    assert jobs[progressing].status == JobStatus.RUNNING, "a ten-day-old job that still reports progress is never reaped"
    assert jobs[just_inside].status == JobStatus.RUNNING
    assert jobs[fresh_queued].status == JobStatus.QUEUED
    assert jobs[old_success].status == JobStatus.SUCCESS and jobs[old_success].error is None
    assert jobs[old_failed].error == "original error"

    assert reap_stuck_vectorization_jobs() == {"reaped": 0}, "a second pass finds nothing more"


def test_a_job_that_keeps_reporting_progress_outlives_many_timeouts(pi_db, add_job):
    job_id = add_job("ws-long", JobStatus.RUNNING, started=timedelta(0), heartbeat=timedelta(0))
    silent_id = add_job("ws-quiet", JobStatus.RUNNING, started=timedelta(0), heartbeat=timedelta(0))
    now = utcnow()
    for step in range(1, 7):  # 4.5 hours against a 60-minute timeout; the long job reports progress every 45 minutes
        moment = now + step * 45 * MINUTE
        reaped = {entry["job_id"] for entry in reap_stuck_jobs(pi_db, timeout_minutes=60, now=moment)}
        assert reaped == ({silent_id} if step == 2 else set()), f"step {step}"
        with pi_db.session() as session:
            session.get(WorkspaceVectorization, job_id).progress_at = moment
    assert _jobs(pi_db)[job_id].status == JobStatus.RUNNING


def test_task_and_daily_beat_entry_are_registered(pi_env):
    settings = pi_env(PI_REAPER_INTERVAL=3600)
    app = create_app(settings)
    assert "pi.celery_app.reap_stuck_vectorization_jobs" in app.tasks
    entry = app.conf.beat_schedule["reap-stuck-vectorization-jobs"]
    assert entry["task"] == "pi.celery_app.reap_stuck_vectorization_jobs" and entry["schedule"] == 3600
    assert create_app(pi_env(PI_REAPER_INTERVAL=None)).conf.beat_schedule["reap-stuck-vectorization-jobs"]["schedule"] == 86400

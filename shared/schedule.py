"""The renewal cron's definition (shared/scheduler_job.json) and the jitter Google asks periodic jobs to use.

Why one file: Terraform's values, `python -m infra.ops scheduler-sync` (Cloud Scheduler API) and the local scheduler
all read scheduler_job.json, so the schedule, deadline and retry policy cannot drift apart.
"""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

JOB_FILE = Path(__file__).with_name("scheduler_job.json")
JITTER_FRACTION = 0.25  # Google asks for ±25% jitter on periodic jobs (README, Google facts: errors and limits)


class RetryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    retry_count: int = Field(ge=0, le=5)
    min_backoff_seconds: int = Field(ge=0)
    max_backoff_seconds: int = Field(ge=0)
    max_doublings: int = Field(ge=0)


class SchedulerJob(BaseModel):
    """scheduler_job.json, validated."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,500}$")
    description: str = ""
    schedule: str
    time_zone: str = "Etc/UTC"
    attempt_deadline_seconds: int = Field(ge=15, le=1800)
    retry: RetryConfig
    local_interval_seconds: float = Field(gt=0)


@functools.cache
def load_job(path: str | None = None) -> SchedulerJob:
    return SchedulerJob.model_validate(json.loads(Path(path or JOB_FILE).read_text()))


def jittered_seconds(base: float, *, fraction: float = JITTER_FRACTION, rng: random.Random | None = None) -> float:
    """`base` scaled by a uniform factor in [1 - fraction, 1 + fraction]."""
    return base * (rng or random).uniform(1 - fraction, 1 + fraction)


def job_name(project: str, location: str, job: SchedulerJob | None = None) -> str:
    return f"projects/{project}/locations/{location}/jobs/{(job or load_job()).name}"


def job_proto(
    *,
    project: str,
    location: str,
    target_url: str,
    service_account: str,
    audience: str | None = None,
    job: SchedulerJob | None = None,
) -> Any:
    """The Cloud Scheduler Job (google.cloud.scheduler_v1.Job): an authenticated POST to the private renew function."""
    from google.cloud import scheduler_v1
    from google.protobuf import duration_pb2

    job = job or load_job()
    return scheduler_v1.Job(
        name=job_name(project, location, job),
        description=job.description,
        schedule=job.schedule,
        time_zone=job.time_zone,
        attempt_deadline=duration_pb2.Duration(seconds=job.attempt_deadline_seconds),
        retry_config=scheduler_v1.RetryConfig(
            retry_count=job.retry.retry_count,
            min_backoff_duration=duration_pb2.Duration(seconds=job.retry.min_backoff_seconds),
            max_backoff_duration=duration_pb2.Duration(seconds=job.retry.max_backoff_seconds),
            max_doublings=job.retry.max_doublings,
        ),
        http_target=scheduler_v1.HttpTarget(
            uri=target_url,
            http_method=scheduler_v1.HttpMethod.POST,
            headers={"Content-Type": "application/json"},
            body=b"{}",
            oidc_token=scheduler_v1.OidcToken(service_account_email=service_account, audience=audience or target_url),
        ),
    )

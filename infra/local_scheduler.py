"""Plays Cloud Scheduler locally: POSTs `{}` to the renew function every `local_interval_seconds` (jittered).

Same payload and headers as production's job (shared/scheduler_job.json via shared.schedule): `Content-Type:
application/json`, body `{}`, and an OIDC bearer token. Locally the token is minted by the Google stand-in (issuer
https://accounts.google.com). In `make run` the token provider comes from the front doors (infra/front_doors.py): the
job's account and audience as terraform/ configures them, checked by renew's Cloud Run IAM stand-in and then, with the
signature removed, by the function's claim check (SCHEDULER_OIDC_AUDIENCE / SCHEDULER_INVOKER_EMAIL).
Retries follow the job's retry policy on 5xx / transport errors. Used by `make run` (infra/devstack.py).

    python -m infra.local_scheduler --url http://127.0.0.1:8080/renew [--once]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.logs import configure_logging, log_event
from shared.schedule import SchedulerJob, jittered_seconds, load_job

logger = logging.getLogger("infra.local_scheduler")
LOCAL_INVOKER = "local-scheduler@crm-gcal-sync-local.iam.gserviceaccount.com"
TOKEN_LIFETIME = 3600


def standin_base_url() -> str | None:
    """The stand-in's base URL in the dev stack (its token endpoint is `<base>/token`)."""
    explicit = os.environ.get("GOOGLE_STANDIN_URL")
    if explicit:
        return explicit.rstrip("/")
    token_uri = os.environ.get("GOOGLE_OAUTH_TOKEN_URI", "")
    if token_uri.endswith("/token") and token_uri.startswith("http://127.0.0.1"):
        return token_uri[: -len("/token")]
    return None


@dataclass
class StandinTokenProvider:
    """Mints Google-style OIDC tokens through the stand-in's control API, cached until close to expiry."""

    audience: str
    email: str = LOCAL_INVOKER
    base_url: str | None = None
    _cached: tuple[float, str] | None = None

    def __call__(self) -> str | None:
        base = self.base_url or standin_base_url()
        if base is None:
            return None
        if self._cached and self._cached[0] > time.time() + 300:
            return self._cached[1]
        from infra.google_standin.control import ControlClient

        token = ControlClient(base).mint_id_token(
            "local-scheduler", self.audience, issuer="https://accounts.google.com", email=self.email,
            issued_at=time.time(), expires_in=TOKEN_LIFETIME, claims={"email_verified": True},
        )
        self._cached = (time.time() + TOKEN_LIFETIME, token)
        return token


@dataclass
class LocalScheduler:
    url: str
    job: SchedulerJob
    interval: float
    token_provider: Callable[[], str | None] | None = None
    rng: random.Random = field(default_factory=random.Random)
    runs: int = 0
    last_report: dict[str, Any] | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def fire(self) -> dict[str, Any] | None:
        """One scheduled attempt, with the job's retry policy; returns the renew function's JSON report."""
        import requests

        headers = {"Content-Type": "application/json", "User-Agent": "Google-Cloud-Scheduler"}
        try:
            token = self.token_provider() if self.token_provider else None
        except Exception:
            token = None
            logger.warning("local scheduler could not mint a token; sending none")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        backoff = float(self.job.retry.min_backoff_seconds)
        for attempt in range(self.job.retry.retry_count + 1):
            try:
                response = requests.post(
                    self.url, data=b"{}", headers=headers, timeout=self.job.attempt_deadline_seconds
                )
                status = response.status_code
            except requests.RequestException as exc:
                status, response = 0, None
                log_event(logger, "scheduled renew unreachable", level=logging.WARNING, error=type(exc).__name__)
            self.runs += 1
            if response is not None and status < 500:
                try:
                    self.last_report = response.json()
                except ValueError:
                    self.last_report = None
                log_event(logger, "scheduled renew ran", status=status, attempt=attempt + 1,
                          report=(self.last_report or {}).get("counts"))
                return self.last_report
            # Retries are compressed locally: a tenth of the production backoff, capped at the local interval.
            if self._stop.wait(min(self.interval, backoff / 10)):
                return None
            backoff = min(float(self.job.retry.max_backoff_seconds), backoff * 2)
        return None

    def _loop(self) -> None:
        while not self._stop.wait(jittered_seconds(self.interval, rng=self.rng)):
            self.fire()

    def start(self) -> LocalScheduler:
        self._thread = threading.Thread(target=self._loop, name="local-scheduler", daemon=True)
        self._thread.start()
        log_event(logger, "local scheduler started", url=self.url, interval_s=self.interval, job=self.job.name,
                  production_schedule=self.job.schedule)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def start_local_scheduler(
    url: str, *, interval: float | None = None, token_provider: Callable[[], str | None] | None = None
) -> LocalScheduler:
    """Start playing Cloud Scheduler against `url` (the renew function) in a background thread."""
    job = load_job()
    provider = token_provider if token_provider is not None else StandinTokenProvider(audience=url)
    return LocalScheduler(url, job, interval or job.local_interval_seconds, provider).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Play Cloud Scheduler against the local renew function")
    parser.add_argument("--url", required=True, help="the renew function's URL")
    parser.add_argument("--interval", type=float, default=None, help="seconds (default: the job's local interval)")
    parser.add_argument("--once", action="store_true", help="fire once, print the report and exit")
    args = parser.parse_args(argv)
    configure_logging()
    job = load_job()
    scheduler = LocalScheduler(args.url, job, args.interval or job.local_interval_seconds,
                               StandinTokenProvider(audience=args.url))
    if args.once:
        print(json.dumps(scheduler.fire(), indent=2, default=str))
        return 0
    scheduler.start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        scheduler.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

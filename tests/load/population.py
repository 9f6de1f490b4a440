"""A simulated population on a compressed clock: the measured inputs of the capacity model (tests/benchmarks/
bench_capacity.py).

`make run`'s stack in-process (tests/load/loadrun.start_stack: the Firestore emulator, the Google stand-in, every
function served over HTTP by functions-framework, the local Firestore trigger). N users connect and enable sync of
their primary calendar through the served `sync_enable`. Then one simulated day runs hour by hour: each hour's share
of the day's activity is played against the stack as fast as it goes, the backlog is drained, the clock (ours and the
stand-in's, together) moves one hour on, and the cron runs once through the served `renew` with a scheduler OIDC
token (hourly: Cloud Scheduler runs it every 5 minutes, which finds the same due work sooner). After the day the
clock jumps to the channels' renewal window and the cron runs once more: that run's cost is one channel lifetime's
renewal of every calendar.

Activity profile per user and business day (ACTIVITY_PER_USER_DAY; counts drawn per user from a Poisson law, hours
from HOUR_WEIGHTS, which put 80% of the day between 08:00 and 18:00 with a 10:00-11:00 and 14:00-16:00 peak):
CRM creates 1.5, CRM edits 2, CRM deletions 0.3; Google creates 0.7, Google edits 1.5, Google deletions 0.2;
invitations 0.5 (a Google event with the user and two guests, one of whom accepts: two Google changes); an import
burst (IMPORT_EVENTS events created in Google in a row) for IMPORT_SHARE of users a day; a reconnect (sync_disable then
sync_enable of the calendar, which re-watches it and runs a full sync) for RECONNECT_SHARE of users a day.

Measured: Google calls by method (the stand-in's counters), Firestore reads / writes / queries / commits of the
functions (the store's op counters of the functions' context), invocations, CPU-seconds and wall-seconds per function
(a WSGI meter around the served functions: `time.thread_time` of the request's thread, so the gRPC and HTTP libraries'
own background threads are not counted; and the whole process's CPU over the request, which for the cron, alone on the
stack while it runs but served by the in-process stand-in, is an upper bound of its worker threads' CPU), per
simulated hour and for the renewal run.
"""

from __future__ import annotations

import collections
import datetime as dt
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

# Expected actions per user and business day (Poisson means).
ACTIVITY_PER_USER_DAY: dict[str, float] = {
    "crm_create": 1.5,
    "crm_edit": 2.0,
    "crm_delete": 0.3,
    "google_create": 0.7,
    "google_edit": 1.5,
    "google_delete": 0.2,
    "invitation": 0.5,
}
IMPORT_SHARE = 0.03  # users importing a batch of events into Google on a given day
IMPORT_EVENTS = 40
RECONNECT_SHARE = 0.02  # users disabling and re-enabling sync on a given day
# Relative activity per UTC hour: business hours carry the day, with a late-morning and an afternoon peak.
HOUR_WEIGHTS = (1, 1, 1, 1, 1, 1, 2, 5, 12, 16, 20, 18, 10, 14, 20, 18, 12, 6, 3, 2, 2, 1, 1, 1)
WRITE_METHODS = ("insert", "patch", "update", "delete", "import", "move")


class FunctionMeter:
    """WSGI wrapper counting invocations, CPU-seconds (the request thread's) and wall-seconds per function."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.stats: dict[str, dict[str, float]] = collections.defaultdict(
            lambda: {"invocations": 0, "cpu_s": 0.0, "process_cpu_s": 0.0, "wall_s": 0.0, "billed_s": 0.0}
        )

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        name = environ.get("PATH_INFO", "/").lstrip("/").partition("/")[0]
        cpu, process_cpu, wall = time.thread_time(), time.process_time(), time.perf_counter()
        try:
            return list(self.app(environ, start_response))  # the whole response, inside the metered span
        finally:
            cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
            process_cpu = time.process_time() - process_cpu
            with self.lock:
                entry = self.stats[name]
                entry["invocations"] += 1
                entry["cpu_s"] += cpu
                entry["process_cpu_s"] += process_cpu
                entry["wall_s"] += wall
                entry["billed_s"] += max(0.1, -(-wall // 0.1) * 0.1)  # Cloud Run rounds up to 100 ms

    def snapshot(self) -> dict[str, dict[str, float]]:
        with self.lock:
            return {k: dict(v) for k, v in self.stats.items()}


class SkewClock:
    """Our clock and the stand-in's moved forward together (no sleeping)."""

    def __init__(self, control: Any) -> None:
        self.control = control
        self.offset = 0.0

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.offset)

    def advance(self, seconds: float) -> None:
        self.control.advance_clock(seconds)
        self.offset += seconds


@dataclass
class User:
    uid: str
    email: str
    google_events: list[str] = field(default_factory=list)
    crm_events: list[str] = field(default_factory=list)


@dataclass
class Window:
    """What one stretch of the run cost: Google calls by method, Firestore ops, function meters."""

    google: dict[str, int]
    firestore: dict[str, int]
    functions: dict[str, dict[str, float]]
    cron: dict[str, Any] | None = None


def _delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def _functions_delta(after: dict[str, dict[str, float]], before: dict[str, dict[str, float]]) -> dict[str, Any]:
    return {
        name: _delta(values, before.get(name, {}))
        for name, values in after.items()
        if values["invocations"] != before.get(name, {}).get("invocations", 0)
    }


def plan_day(users: list[User], rng: random.Random) -> list[list[tuple[str, User]]]:
    """The day's actions, per UTC hour: (kind, user). Poisson counts per user and kind, hours drawn by weight."""
    hours: list[list[tuple[str, User]]] = [[] for _ in range(24)]
    business = [h for h, w in enumerate(HOUR_WEIGHTS) if w >= 10]

    def poisson(mean: float) -> int:
        count, threshold, product = 0, pow(2.718281828459045, -mean), rng.random()
        while product > threshold:
            count += 1
            product *= rng.random()
        return count

    for user in users:
        for kind, mean in ACTIVITY_PER_USER_DAY.items():
            for _ in range(poisson(mean)):
                hours[rng.choices(range(24), weights=HOUR_WEIGHTS)[0]].append((kind, user))
        if rng.random() < IMPORT_SHARE:
            hours[rng.choice(business)].append(("import", user))
        if rng.random() < RECONNECT_SHARE:
            hours[rng.choice(business)].append(("reconnect", user))
    for actions in hours:
        rng.shuffle(actions)
    return hours


class Population:
    """The stack, the users and the actions they take."""

    def __init__(self, users: int, seed: int = 17) -> None:
        from shared.context import default_context
        from tests.load.loadrun import start_stack

        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.meter: FunctionMeter | None = None

        def wrap(app: Any) -> FunctionMeter:
            self.meter = FunctionMeter(app)
            return self.meter

        self.stack = start_stack(wrap_app=wrap)
        import logging

        from shared.logs import configure_logging

        # One INFO line per call would take the stack's CPU: the functions' JSON logging installed now (it installs
        # once), then warnings and errors only, the stand-in's too.
        configure_logging()
        for name in ("", "google_standin"):
            logging.getLogger(name).setLevel(logging.WARNING)
        try:
            self.ctx = default_context()
            self.clock = SkewClock(self.stack.control)
            self.ctx.clock = self.clock
            self.users = self._connect(users)
            from google.cloud import firestore

            self.crm = firestore.Client(project=self.stack.project)  # the CRM's own client: its ops are not ours
        except BaseException:
            self.stack.stop()
            raise

    # -- setup ------------------------------------------------------------------------------------------------------
    def id_token(self, uid: str) -> str:
        settings = self.ctx.settings
        return self.stack.control.mint_id_token(
            uid, settings.id_token_audience, issuer=settings.id_token_issuer, issued_at=time.time()
        )

    def _call(self, function: str, uid: str, body: dict[str, Any]) -> None:
        answer = requests.post(
            self.stack.doors.route_url(function),  # through the gateway: the function's own door admits only it
            json=body,
            timeout=120,
            headers={"Authorization": f"Bearer {self.id_token(uid)}"},
        )
        if answer.status_code not in (200, 202):
            raise RuntimeError(f"{function} failed for {uid}: {answer.status_code} {answer.text[:300]}")

    def _connect(self, count: int) -> list[User]:
        from shared.config import GOOGLE_SCOPES
        from shared.models import Integration, IntegrationStatus

        control, settings = self.stack.control, self.ctx.settings

        def one(index: int) -> User:
            user = User(f"cap-user-{index}", f"cap{index}@example.com")
            control.create_account(user.email)
            token = control.issue_refresh_token(user.email, settings.oauth_client_id, list(GOOGLE_SCOPES))
            ciphertext, key_id = self.ctx.cipher.encrypt(token, owner=user.uid)
            self.ctx.store.save_integration(
                Integration(
                    user_id=user.uid,
                    status=IntegrationStatus.CONNECTED,
                    account_email=user.email,
                    scopes=list(GOOGLE_SCOPES),
                    refresh_token_ciphertext=ciphertext,
                    key_id=key_id,
                    target_calendar_id=user.email,
                    connected_at=self.clock(),
                    updated_at=self.clock(),
                )
            )
            self._call("sync_enable", user.uid, {"calendar_ids": [user.email]})
            return user

        with ThreadPoolExecutor(max_workers=8) as pool:
            users = list(pool.map(one, range(count)))
        control.flush(timeout=60)
        return users

    # -- actions ----------------------------------------------------------------------------------------------------
    def _times(self, rng: random.Random) -> tuple[str, str]:
        start = (self.clock() + dt.timedelta(days=rng.randint(1, 30))).replace(
            hour=rng.randint(8, 17), minute=0, second=0, microsecond=0
        )
        return start.isoformat(), (start + dt.timedelta(minutes=30 * rng.randint(1, 4))).isoformat()

    def _pick(self, events: list[str], rng: random.Random) -> str | None:
        with self.lock:
            return rng.choice(events) if events else None

    def _google_create(self, user: User, rng: random.Random, **extra: Any) -> dict[str, Any]:
        start, end = self._times(rng)
        created = self.stack.control.create_event(
            user.email,
            {"summary": "customer call", "start": {"dateTime": start}, "end": {"dateTime": end}, **extra},
            send_updates="all" if extra.get("attendees") else "none",
        )
        with self.lock:
            user.google_events.append(created["id"])
        return created

    def _crm_write(self, user: User, rng: random.Random, kind: str) -> None:
        from shared.models import CrmEvent, dump_for_firestore

        now = self.clock()
        crm_id = self._pick(user.crm_events, rng) if kind != "crm_create" else None
        if crm_id is None:
            crm_id = f"cap-{uuid.uuid4().hex[:16]}"
            start, end = self._times(rng)
            event = CrmEvent.model_validate(
                {
                    "id": crm_id,
                    "owner_id": user.uid,
                    "title": "demo",
                    "start": {"date_time": start},
                    "end": {"date_time": end},
                    "meta": {"deal_id": f"deal-{crm_id[-6:]}", "kind": "demo"},
                    "send_updates": "none",
                    "created_at": now,
                    "updated_at": now,
                }
            )
            data = dump_for_firestore(event)
            data.pop("id", None)
            self.crm.collection("events").document(crm_id).set(data)
            with self.lock:
                user.crm_events.append(crm_id)
        elif kind == "crm_delete":
            with self.lock:
                user.crm_events.remove(crm_id)
            self.crm.collection("events").document(crm_id).update({"deleted": True, "updated_at": now})
        else:
            self.crm.collection("events").document(crm_id).update(
                {"title": f"demo {rng.random():.5f}", "updated_at": now}
            )

    def act(self, kind: str, user: User, rng: random.Random) -> None:
        control = self.stack.control
        if kind.startswith("crm_"):
            self._crm_write(user, rng, kind)
        elif kind == "google_create":
            self._google_create(user, rng)
        elif kind == "google_edit":
            event_id = self._pick(user.google_events, rng)
            if event_id is None:
                self._google_create(user, rng)
            else:
                control.edit_event(user.email, event_id, {"summary": f"call {rng.random():.5f}"})
        elif kind == "google_delete":
            event_id = self._pick(user.google_events, rng)
            if event_id is not None:
                with self.lock:
                    user.google_events.remove(event_id)
                control.delete_event(user.email, event_id)
        elif kind == "invitation":
            guests = [f"guest{rng.randint(1, 999)}@partner.example", f"guest{rng.randint(1, 999)}@partner.example"]
            created = self._google_create(
                user,
                rng,
                attendees=[{"email": user.email, "responseStatus": "accepted"}]
                + [{"email": g} for g in dict.fromkeys(guests)],
            )
            control.reply(user.email, created["id"], guests[0], "accepted")
        elif kind == "import":
            for _ in range(IMPORT_EVENTS):
                self._google_create(user, rng)
        elif kind == "reconnect":
            self._call("sync_disable", user.uid, {"calendar_ids": [user.email]})
            self._call("sync_enable", user.uid, {"calendar_ids": [user.email]})
        else:
            raise ValueError(kind)

    # -- measurement ------------------------------------------------------------------------------------------------
    def counters(self) -> tuple[dict[str, int], dict[str, int], dict[str, dict[str, float]]]:
        """Google calls by method of authenticated requests only: on the compressed clock an access token expires
        after an hour of simulated time while google-auth, which refreshes ahead of expiry by the real clock, still
        holds it; the one 401 each user's first call of an hour meets would not happen in production (it is counted
        apart, as `unauthenticated`)."""
        counters = self.stack.control.counters()
        google: collections.Counter[str] = collections.Counter()
        for methods in counters.get("by_account_method", {}).values():
            google.update(methods)
        google["unauthenticated"] = counters.get("total", 0) - sum(counters.get("by_account", {}).values())
        assert self.meter is not None
        return dict(google), dict(self.ctx.store.ops), self.meter.snapshot()

    def settle(self, budget: float = 120) -> None:
        """Deliveries and triggers drained until neither has anything left (or the budget runs out)."""
        deadline = time.monotonic() + budget
        while time.monotonic() < deadline:
            idle = bool(self.stack.control.flush(timeout=max(1.0, min(60.0, deadline - time.monotonic()))).get("idle"))
            time.sleep(0.3)  # the trigger's listener sees the last commits
            drained = self.stack.trigger.drain(timeout=max(1.0, min(60.0, deadline - time.monotonic())))
            if idle and drained and bool(self.stack.control.flush(timeout=1).get("idle")):
                return

    def cron(self) -> dict[str, Any]:
        """One scheduled run of the served `renew`, with the scheduler's OIDC token (as Cloud Scheduler calls it)."""
        url = self.stack.doors.function_url("renew")
        token = self.stack.doors.scheduler_token()()  # the job's account and audience, as Terraform configures them
        answer = requests.post(
            url,
            data=b"{}",
            timeout=600,
            headers={
                "Content-Type": "application/json",
                "User-Agent": "Google-Cloud-Scheduler",
                "Authorization": f"Bearer {token}",
            },
        )
        if answer.status_code != 200:
            raise RuntimeError(f"renew failed: {answer.status_code} {answer.text[:300]}")
        return answer.json()

    def measure(self, work: Any) -> Window:
        google0, ops0, fn0 = self.counters()
        cron = work()
        google1, ops1, fn1 = self.counters()
        return Window(_delta(google1, google0), _delta(ops1, ops0), _functions_delta(fn1, fn0), cron)

    def run_day(self, workers: int = 8) -> list[Window]:
        """One business day, hour by hour: the hour's actions, drained, the clock one hour on, the cron."""
        hours = plan_day(self.users, self.rng)
        windows: list[Window] = []
        for hour, actions in enumerate(hours):

            def work(actions: list[tuple[str, User]] = actions, hour: int = hour) -> dict[str, Any]:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    list(pool.map(lambda a: self.act(a[0], a[1], random.Random(f"{hour}:{a[1].uid}:{a[0]}")), actions))
                self.settle()
                self.clock.advance(3600)
                report = self.cron()
                self.settle()
                return report

            windows.append(self.measure(work))
            by_kind = collections.Counter(kind for kind, _ in actions)
            windows[-1].cron = dict(windows[-1].cron or {}, actions=len(actions), actions_by_kind=dict(by_kind))
        return windows

    def run_renewal_window(self) -> Window:
        """Jump to the channels' renewal window and run the cron: one channel lifetime's renewal of every calendar."""
        settings = self.ctx.settings
        lifetime = settings.channel_ttl_seconds - min(settings.renew_before_seconds, settings.channel_ttl_seconds / 2)

        def work() -> dict[str, Any]:
            self.clock.advance(max(0.0, lifetime - self.clock.offset) + 3600)
            report = self.cron()
            self.settle()
            return report

        return self.measure(work)

    def stop(self) -> None:
        self.crm.close()
        self.stack.stop()

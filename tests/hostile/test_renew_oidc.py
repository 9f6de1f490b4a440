"""The private renew function with in-function OIDC verification configured (SCHEDULER_OIDC_AUDIENCE): anything but
the scheduler's own Google-signed token for the right audience and invoker is a 401, with nothing run."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.hostile.harness import Case, Req, run_case, send
from tests.hostile.probes import World

AUDIENCE = "https://renew.example.run.app"
INVOKER = "scheduler@crm-sync.iam.gserviceaccount.com"
GOOGLE = "https://accounts.google.com"


def oidc(w: World, **kwargs: Any) -> dict[str, str]:
    kwargs.setdefault("issuer", GOOGLE)
    kwargs.setdefault("email", INVOKER)
    kwargs.setdefault("issued_at", time.time())
    audience = kwargs.pop("audience", AUDIENCE)
    token = w.google.control.mint_id_token("1234567890", audience, **kwargs)
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def renew(headers: Any) -> Any:
    return lambda w: Req("POST", headers(w), "{}")


CASES = [
    Case("no-token", "renew", renew(lambda w: {"Content-Type": "application/json"}), 401, "unauthenticated"),
    Case(
        "firebase-user-token",
        "renew",
        renew(lambda w: {"Authorization": f"Bearer {w.id_token('user-a')}", "Content-Type": "application/json"}),
        401,
        "unauthenticated",
    ),
    Case("wrong-audience", "renew", renew(lambda w: oidc(w, audience="https://other.run.app")), 401, "unauthenticated"),
    Case("wrong-issuer", "renew", renew(lambda w: oidc(w, issuer="https://evil.example.com")), 401, "unauthenticated"),
    Case(
        "other-service-account",
        "renew",
        renew(lambda w: oidc(w, email="intruder@evil.iam.gserviceaccount.com")),
        401,
        "unauthenticated",
    ),
    Case(
        "unverified-email", "renew", renew(lambda w: oidc(w, claims={"email_verified": False})), 401, "unauthenticated"
    ),
    Case("wrong-key", "renew", renew(lambda w: oidc(w, wrong_key=True)), 401, "unauthenticated"),
    Case("expired", "renew", renew(lambda w: oidc(w, issued_at=time.time() - 7200)), 401, "unauthenticated"),
]


@pytest.fixture
def oidc_world(world: World) -> World:
    world.ctx.settings = world.ctx.settings.model_copy(
        update={
            "scheduler_oidc_audience": AUDIENCE,
            "scheduler_oidc_certs_url": world.google.certs_url,
            "scheduler_invoker_email": INVOKER,
        }
    )
    return world


@pytest.mark.parametrize("case", CASES, ids=str)
def test_renew_rejects_without_the_schedulers_token(oidc_world: World, logs: Any, case: Case) -> None:
    run_case(oidc_world, logs, case)


def test_renew_accepts_the_schedulers_token(oidc_world: World) -> None:
    answer = send(oidc_world, "renew", Req("POST", oidc(oidc_world), "{}"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["ok"] is True

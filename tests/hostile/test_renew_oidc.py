"""The private renew function with its claim check configured (SCHEDULER_OIDC_AUDIENCE): anything but the scheduler's
own token for the right audience and invoker, with a verified email and unexpired, is a 401 with nothing run.

Cloud Run IAM (infra/cloud_run_iam.py locally) checks the signature and forwards the token with the signature replaced
by `SIGNATURE_REMOVED_BY_GOOGLE`; the function reads the claims and must accept exactly that shape."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.hostile.harness import Case, Req, run_case, send
from tests.hostile.probes import World

AUDIENCE = "https://renew.example.run.app"
INVOKER = "scheduler@crm-sync.iam.gserviceaccount.com"
GOOGLE = "https://accounts.google.com"


def strip_signature(token: str) -> str:
    """What Cloud Run forwards after checking a Google-signed token."""
    header, payload, _ = token.split(".")
    return f"{header}.{payload}.SIGNATURE_REMOVED_BY_GOOGLE"


def oidc(w: World, **kwargs: Any) -> dict[str, str]:
    kwargs.setdefault("issuer", GOOGLE)
    kwargs.setdefault("email", INVOKER)
    kwargs.setdefault("issued_at", time.time())
    audience = kwargs.pop("audience", AUDIENCE)
    token = strip_signature(w.google.control.mint_id_token("1234567890", audience, **kwargs))
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
    Case(
        "email-verified-missing",
        "renew",
        renew(lambda w: oidc(w, claims={"email_verified": None})),
        401,
        "unauthenticated",
    ),
    Case(
        "email-verified-string",
        "renew",
        renew(lambda w: oidc(w, claims={"email_verified": "true"})),
        401,
        "unauthenticated",
    ),
    Case(
        "not-a-jwt-payload",
        "renew",
        renew(
            lambda w: {
                "Authorization": "Bearer eyJhbGciOiJSUzI1NiJ9.bm90LWpzb24.SIGNATURE_REMOVED_BY_GOOGLE",
                "Content-Type": "application/json",
            }
        ),
        401,
        "unauthenticated",
    ),
    Case("expired", "renew", renew(lambda w: oidc(w, issued_at=time.time() - 7200)), 401, "unauthenticated"),
]


@pytest.fixture
def oidc_world(world: World) -> World:
    world.doors = None  # the function's own claim check, as it sits behind Cloud Run IAM (tests/doors tests the door)
    world.ctx.settings = world.ctx.settings.model_copy(
        update={
            "scheduler_oidc_audience": AUDIENCE,
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


def test_renew_never_relies_on_a_signature_cloud_run_removes(oidc_world: World) -> None:
    """The token exactly as Cloud Run forwards it (signature removed) is accepted; the claims are what is checked."""
    token = oidc_world.google.control.mint_id_token(
        "1234567890", AUDIENCE, issuer=GOOGLE, email=INVOKER, issued_at=time.time()
    )
    stripped = strip_signature(token)
    assert stripped.endswith(".SIGNATURE_REMOVED_BY_GOOGLE")
    answer = send(
        oidc_world,
        "renew",
        Req("POST", {"Authorization": f"Bearer {stripped}", "Content-Type": "application/json"}, "{}"),
    )
    assert answer.status_code == 200, answer.text

"""Hostile input against the user-facing and private HTTP functions (oauth_*, sync_*, renew), served over HTTP.

Identity comes only from a verified Firebase-style ID token: missing, malformed, expired, not yet valid, wrongly
signed, unsigned (alg none), for another audience or issuer -> 401. Bodies are strict: malformed JSON, non-objects,
unknown fields, wrong types, out-of-range values -> 400; oversized -> 413; not JSON -> 415; wrong method -> 405.
Every case: no Google call, no Firestore change, no secret in the answer or the logs.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
import requests

from tests.hostile.harness import Case, Req, run_case, send
from tests.hostile.probes import World, diff_snapshots, firestore_snapshot, google_state

AUTHED = {
    "oauth_start": "GET",
    "oauth_disconnect": "POST",
    "sync_enable": "POST",
    "sync_disable": "POST",
    "sync_status": "GET",
    "sync_conflicts": "GET",
    "sync_resolve": "POST",
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def unsigned_token(w: World) -> str:
    now = int(time.time())
    claims = {
        "iss": w.ctx.settings.id_token_issuer,
        "aud": w.ctx.settings.id_token_audience,
        "sub": "user-a",
        "iat": now,
        "exp": now + 3600,
    }
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."


def hs256_token(w: World) -> str:
    """Signed with HMAC using the public certificate as the key (the classic alg-confusion attack)."""
    import hashlib
    import hmac

    now = int(time.time())
    claims = {
        "iss": w.ctx.settings.id_token_issuer,
        "aud": w.ctx.settings.id_token_audience,
        "sub": "user-a",
        "iat": now,
        "exp": now + 3600,
    }
    key = next(iter(w.google.handle.standin.oauth.certs().values())).encode()
    head = f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': w.google.handle.standin.oauth.keys.kid})}.{_b64(claims)}"
    sig = base64.urlsafe_b64encode(hmac.new(key, head.encode(), hashlib.sha256).digest()).decode().rstrip("=")
    return f"{head}.{sig}"


TOKEN_ATTACKS: dict[str, Any] = {
    "no-authorization": lambda w: {},
    "basic-scheme": lambda w: {"Authorization": "Basic dXNlci1hOnBhc3N3b3Jk"},
    "bearer-empty": lambda w: {"Authorization": "Bearer "},
    "bearer-not-a-jwt": lambda w: bearer("not-a-jwt"),
    "bearer-garbage-jwt": lambda w: bearer("aaaa.bbbb.cccc"),
    "bearer-huge": lambda w: bearer("a" * 3000 + "." + "b" * 3000 + "." + "c" * 3000),
    "expired": lambda w: bearer(w.id_token("user-a", issued_at=time.time() - 7200, expires_in=3600)),
    "not-yet-valid": lambda w: bearer(w.id_token("user-a", issued_at=time.time() + 3600)),
    "wrong-key": lambda w: bearer(w.id_token("user-a", wrong_key=True)),
    "wrong-audience": lambda w: bearer(w.id_token("user-a", audience="another-project")),
    "wrong-issuer": lambda w: bearer(w.id_token("user-a", issuer="https://securetoken.google.com/another-project")),
    "google-issuer-not-firebase": lambda w: bearer(w.id_token("user-a", issuer="https://accounts.google.com")),
    "alg-none": lambda w: bearer(unsigned_token(w)),
    "alg-hs256-confusion": lambda w: bearer(hs256_token(w)),
    "empty-subject": lambda w: bearer(w.id_token("user-a", claims={"sub": ""})),
    "token-in-query-only": lambda w: {},
}


def _token_case(function: str, method: str, attack: str) -> Case:
    make = TOKEN_ATTACKS[attack]

    def build(w: World) -> Req:
        headers = make(w)
        data = None
        if method == "POST":
            headers = {**headers, "Content-Type": "application/json"}
            data = "{}"
        params = {"id_token": w.id_token("user-a")} if attack == "token-in-query-only" else None
        return Req(method, headers, data, params)

    return Case(f"{function}-{attack}", function, build, 401, "unauthenticated")


TOKEN_CASES = [_token_case(f, m, a) for f, m in AUTHED.items() for a in TOKEN_ATTACKS]


def authed(
    method: str, data: Any = None, content_type: str = "application/json", uid: str = "user-a", params: Any = None
) -> Any:
    def build(w: World) -> Req:
        headers = bearer(w.id_token(uid))
        if content_type:
            headers["Content-Type"] = content_type
        body = data if isinstance(data, bytes | str) or data is None else json.dumps(data)
        return Req(method, headers, body, params)

    return build


BODY_CASES = []
for fn in ("sync_enable", "sync_disable"):
    BODY_CASES += [
        Case(f"{fn}-malformed-json", fn, authed("POST", '{"calendar_ids": ['), 400, "bad_request"),
        Case(f"{fn}-json-array", fn, authed("POST", '["alice@example.com"]'), 400, "bad_request"),
        Case(f"{fn}-json-string", fn, authed("POST", '"hello"'), 400, "bad_request"),
        Case(f"{fn}-not-utf8", fn, authed("POST", b'{"calendar_ids": ["\xff\xfe"]}'), 400, "bad_request"),
        Case(f"{fn}-unknown-field-user-id", fn, authed("POST", {"user_id": "user-b"}), 400, "bad_request"),
        Case(f"{fn}-unknown-field", fn, authed("POST", {"calendars": ["primary"]}), 400, "bad_request"),
        Case(f"{fn}-wrong-type-string", fn, authed("POST", {"calendar_ids": "primary"}), 400, "bad_request"),
        Case(f"{fn}-wrong-type-ints", fn, authed("POST", {"calendar_ids": [1, 2]}), 400, "bad_request"),
        Case(f"{fn}-wrong-type-null-item", fn, authed("POST", {"calendar_ids": [None]}), 400, "bad_request"),
        Case(f"{fn}-empty-list", fn, authed("POST", {"calendar_ids": []}), 400, "bad_request"),
        Case(
            f"{fn}-too-many", fn, authed("POST", {"calendar_ids": [f"c{i}@x" for i in range(26)]}), 400, "bad_request"
        ),
        Case(f"{fn}-id-too-long", fn, authed("POST", {"calendar_ids": ["c" * 1025]}), 400, "bad_request"),
        Case(f"{fn}-empty-id", fn, authed("POST", {"calendar_ids": [""]}), 400, "bad_request"),
        Case(
            f"{fn}-oversized",
            fn,
            authed("POST", json.dumps({"calendar_ids": ["x" * 70_000]})),
            413,
            "payload_too_large",
        ),
        Case(f"{fn}-text-plain", fn, authed("POST", "{}", content_type="text/plain"), 415, "unsupported_media_type"),
        Case(
            f"{fn}-form-encoded",
            fn,
            authed("POST", "calendar_ids=primary", content_type="application/x-www-form-urlencoded"),
            415,
            "unsupported_media_type",
        ),
        Case(f"{fn}-get", fn, authed("GET", None, content_type=""), 405, "method_not_allowed"),
        Case(f"{fn}-put", fn, authed("PUT", "{}"), 405, "method_not_allowed"),
    ]
BODY_CASES += [
    Case("sync_enable-target-wrong-type", "sync_enable", authed("POST", {"target_calendar_id": 5}), 400, "bad_request"),
    Case("sync_enable-target-empty", "sync_enable", authed("POST", {"target_calendar_id": ""}), 400, "bad_request"),
    Case(
        "sync_disable-other-users-calendar",
        "sync_disable",
        authed("POST", {"calendar_ids": ["bob@example.com"]}),
        400,
        "bad_request",
    ),
    Case("sync_disable-unconnected-user", "sync_disable", authed("POST", "{}", uid="mallory"), 404, "not_found"),
    Case(
        "sync_enable-unconnected-user-with-victims-email",
        "sync_enable",
        lambda w: Req(
            "POST",
            {**bearer(w.id_token("mallory", email="alice@example.com")), "Content-Type": "application/json"},
            "{}",
        ),
        409,
        "conflict",
    ),
    Case(
        "sync_status-query-user-id",
        "sync_status",
        authed("GET", None, "", params={"user_id": "user-b"}),
        400,
        "bad_request",
    ),
    Case("sync_status-post", "sync_status", authed("POST", "{}"), 405, "method_not_allowed"),
    Case("oauth_start-put", "oauth_start", authed("PUT", "{}"), 405, "method_not_allowed"),
    Case(
        "oauth_start-login-hint-twice",
        "oauth_start",
        authed("GET", None, "", params=[("login_hint", "a@x.com"), ("login_hint", "b@x.com")]),
        400,
        "bad_request",
    ),
    Case(
        "oauth_start-login-hint-too-long",
        "oauth_start",
        authed("GET", None, "", params={"login_hint": "a" * 3000}),
        400,
        "bad_request",
    ),
    Case(
        "oauth_disconnect-unknown-field", "oauth_disconnect", authed("POST", {"user_id": "user-b"}), 400, "bad_request"
    ),
    Case("oauth_disconnect-malformed-json", "oauth_disconnect", authed("POST", "{"), 400, "bad_request"),
    Case("oauth_disconnect-get", "oauth_disconnect", authed("GET", None, ""), 405, "method_not_allowed"),
    Case(
        "oauth_disconnect-oversized",
        "oauth_disconnect",
        authed("POST", "{" + " " * 70_000 + "}"),
        413,
        "payload_too_large",
    ),
]


GOOD_DECISION = "0" * 20
RESOLVE = "sync_resolve"
BODY_CASES += [
    Case("sync_resolve-empty-body", RESOLVE, authed("POST", ""), 400, "bad_request"),
    Case("sync_resolve-malformed-json", RESOLVE, authed("POST", '{"event_id": '), 400, "bad_request"),
    Case(
        "sync_resolve-missing-keep",
        RESOLVE,
        authed("POST", {"event_id": "e1", "decision": GOOD_DECISION}),
        400,
        "bad_request",
    ),
    Case(
        "sync_resolve-keep-both",
        RESOLVE,
        authed("POST", {"event_id": "e1", "decision": GOOD_DECISION, "keep": "both"}),
        400,
        "bad_request",
    ),
    Case(
        "sync_resolve-decision-not-an-id",
        RESOLVE,
        authed("POST", {"event_id": "e1", "decision": "../x", "keep": "crm"}),
        400,
        "bad_request",
    ),
    Case(
        "sync_resolve-user-id-field",
        RESOLVE,
        authed("POST", {"event_id": "e1", "decision": GOOD_DECISION, "keep": "crm", "user_id": "user-b"}),
        400,
        "bad_request",
    ),
    Case(
        "sync_resolve-event-id-too-long",
        RESOLVE,
        authed("POST", {"event_id": "e" * 1501, "decision": GOOD_DECISION, "keep": "crm"}),
        400,
        "bad_request",
    ),
    Case(
        "sync_resolve-unknown-event",
        RESOLVE,
        authed("POST", {"event_id": "no-such-event", "decision": GOOD_DECISION, "keep": "crm"}),
        404,
        "not_found",
    ),
    Case(
        "sync_resolve-event-id-is-a-path",
        RESOLVE,
        authed("POST", {"event_id": "events/x", "decision": GOOD_DECISION, "keep": "google"}),
        404,
        "not_found",
    ),
    Case("sync_resolve-oversized", RESOLVE, authed("POST", "{" + " " * 70_000 + "}"), 413, "payload_too_large"),
    Case(
        "sync_resolve-text-plain",
        RESOLVE,
        authed("POST", "{}", content_type="text/plain"),
        415,
        "unsupported_media_type",
    ),
    Case("sync_resolve-get", RESOLVE, authed("GET", None, ""), 405, "method_not_allowed"),
    Case("sync_conflicts-post", "sync_conflicts", authed("POST", "{}"), 405, "method_not_allowed"),
    Case(
        "sync_conflicts-user-id-param",
        "sync_conflicts",
        authed("GET", None, "", params={"user_id": "user-b"}),
        400,
        "bad_request",
    ),
    Case(
        "sync_conflicts-page-size-zero",
        "sync_conflicts",
        authed("GET", None, "", params={"page_size": "0"}),
        400,
        "bad_request",
    ),
    Case(
        "sync_conflicts-page-size-huge",
        "sync_conflicts",
        authed("GET", None, "", params={"page_size": "51"}),
        400,
        "bad_request",
    ),
    Case(
        "sync_conflicts-page-size-not-a-number",
        "sync_conflicts",
        authed("GET", None, "", params={"page_size": "-1"}),
        400,
        "bad_request",
    ),
    Case(
        "sync_conflicts-page-garbage",
        "sync_conflicts",
        authed("GET", None, "", params={"page": "%%%"}),
        400,
        "bad_request",
    ),
    Case(
        "sync_conflicts-page-forged",
        "sync_conflicts",
        authed("GET", None, "", params={"page": _b64({"at": "2026-01-01T00:00:00Z", "id": "a/b", "x": 1})}),
        400,
        "bad_request",
    ),
    Case(
        "sync_conflicts-page-size-twice",
        "sync_conflicts",
        authed("GET", None, "", params=[("page_size", "5"), ("page_size", "6")]),
        400,
        "bad_request",
    ),
    Case(
        "sync_status-include-unknown",
        "sync_status",
        authed("GET", None, "", params={"include": "secrets"}),
        400,
        "bad_request",
    ),
    Case(
        "settings_ui-post",
        "settings_ui",
        lambda w: Req("POST", {"Content-Type": "application/json"}, "{}"),
        405,
        "method_not_allowed",
    ),
    Case("settings_ui-traversal", "settings_ui", lambda w: Req("GET", path="..%2Fmain.py"), 404, "not_found"),
    Case("settings_ui-source-file", "settings_ui", lambda w: Req("GET", path="settings_ui.py"), 404, "not_found"),
    Case("settings_ui-dotfile", "settings_ui", lambda w: Req("GET", path=".env"), 404, "not_found"),
]


def callback(params: Any, method: str = "GET") -> Any:
    return lambda w: Req(method, {}, None, params(w) if callable(params) else params)


def real_state(w: World) -> str:
    """A state the oauth_start function really issued for user A (its nonce document is written in prepare)."""
    answer = requests.get(
        w.url("oauth_start"), headers={**bearer(w.id_token("user-a")), "Accept": "application/json"}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    url = answer.json()["authorization_url"]
    import urllib.parse

    state = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["state"][0]
    w.users["user-a"]["state"] = state
    return state


def _tamper(state: str) -> str:
    version, payload, signature = state.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["u"] = "user-b"
    return ".".join([version, _b64(claims), signature])


CALLBACK_CASES = [
    Case("callback-no-params", "oauth_callback", callback({}), 400, "invalid_state"),
    Case(
        "callback-garbage-state", "oauth_callback", callback({"state": "garbage", "code": "abc"}), 400, "invalid_state"
    ),
    Case(
        "callback-forged-state-v1",
        "oauth_callback",
        callback({"state": "v1." + _b64({"u": "user-b", "n": "x", "e": 4102444800}) + ".AAAA", "code": "abc"}),
        400,
        "invalid_state",
    ),
    Case(
        "callback-state-retargeted-to-other-user",
        "oauth_callback",
        callback(lambda w: {"state": _tamper(w.users["user-a"]["state"]), "code": "abc"}),
        400,
        "invalid_state",
        prepare=lambda w: (real_state(w), None)[1],
    ),
    Case(
        "callback-state-twice",
        "oauth_callback",
        callback(lambda w: [("state", w.users["user-a"]["state"])] * 2 + [("code", "abc")]),
        400,
        "bad_request",
        prepare=lambda w: (real_state(w), None)[1],
    ),
    Case(
        "callback-state-too-long",
        "oauth_callback",
        callback({"state": "v1." + "a" * 3000, "code": "c"}),
        400,
        "bad_request",
    ),
    Case(
        "callback-expired-state",
        "oauth_callback",
        callback(lambda w: {"state": w.users["user-a"]["state"], "code": "abc"}),
        400,
        "invalid_state",
        prepare=lambda w: (real_state(w), w.clock.advance(3 * 3600))[1],
    ),
    Case("callback-put", "oauth_callback", callback({"state": "x"}, "PUT"), 405, "method_not_allowed"),
    Case("callback-post-without-id-token", "oauth_callback", callback({"state": "x"}, "POST"), 401, "unauthenticated"),
]

# 20,000 levels of nesting is 40 KB, under the 64 KB size limit; Python's parser gives up with a RecursionError.
DEEP_JSON = '{"calendar_ids":' + "[" * 20_000 + "]" * 20_000 + "}"

DEEP_JSON_CASES = [
    Case("sync_enable-deeply-nested", "sync_enable", authed("POST", DEEP_JSON), 400, "bad_request"),
    Case("sync_disable-deeply-nested", "sync_disable", authed("POST", DEEP_JSON), 400, "bad_request"),
    Case("oauth_disconnect-deeply-nested", "oauth_disconnect", authed("POST", DEEP_JSON), 400, "bad_request"),
    Case("oauth_callback-post-deeply-nested", "oauth_callback", authed("POST", DEEP_JSON), 400, "bad_request"),
    Case(
        "renew-deeply-nested",
        "renew",
        lambda w: Req("POST", {"Content-Type": "application/json"}, DEEP_JSON),
        400,
        "bad_request",
    ),
]

RENEW_CASES = [
    Case(
        "renew-put",
        "renew",
        lambda w: Req("PUT", {"Content-Type": "application/json"}, "{}"),
        405,
        "method_not_allowed",
    ),
    Case("renew-get", "renew", lambda w: Req("GET"), 405, "method_not_allowed"),
    Case(
        "renew-malformed-json",
        "renew",
        lambda w: Req("POST", {"Content-Type": "application/json"}, "{"),
        400,
        "bad_request",
    ),
    Case(
        "renew-unknown-field",
        "renew",
        lambda w: Req("POST", {"Content-Type": "application/json"}, '{"force": true}'),
        400,
        "bad_request",
    ),
    Case(
        "renew-wrong-type",
        "renew",
        lambda w: Req("POST", {"Content-Type": "application/json"}, '{"deadline_seconds": "soon"}'),
        400,
        "bad_request",
    ),
    Case(
        "renew-oversized",
        "renew",
        lambda w: Req("POST", {"Content-Type": "application/json"}, "{" + " " * 70_000 + "}"),
        413,
        "payload_too_large",
    ),
    Case(
        "renew-text-plain",
        "renew",
        lambda w: Req("POST", {"Content-Type": "text/plain"}, "{}"),
        415,
        "unsupported_media_type",
    ),
]

ALL_CASES = TOKEN_CASES + BODY_CASES + CALLBACK_CASES + RENEW_CASES + DEEP_JSON_CASES


@pytest.mark.parametrize("case", ALL_CASES, ids=str)
def test_user_function_rejects(any_world: Any, logs: Any, case: Case) -> None:
    run_case(any_world(case), logs, case)


def test_status_of_another_user_reveals_nothing(world: World, logs: Any) -> None:
    """A valid token for someone who never connected (claiming the victim's email) sees only their own empty status."""
    before = firestore_snapshot(world.ctx.store.db)
    google_before = google_state(world.google)
    token = world.id_token("mallory", email="alice@example.com")
    answer = send(world, "sync_status", Req("GET", bearer(token)))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["user_id"] == "mallory" and body["connected"] is False and body["calendars"] == []
    assert "user-a" not in answer.text and world.users["user-a"]["channel_id"] not in answer.text
    assert diff_snapshots(before, firestore_snapshot(world.ctx.store.db)) == []
    assert google_state(world.google) == google_before


def test_user_cannot_enable_another_users_calendar(world: World) -> None:
    """User A asks to sync B's calendar: refused (it is not in A's calendar list); B's state and A's untouched. The
    check itself reads A's calendarList (one Google read), nothing else."""
    db = world.ctx.store.db
    before = firestore_snapshot(db)
    calls_before = world.google.control.counters()["by_method"]
    answer = send(
        world,
        "sync_enable",
        Req(
            "POST",
            {**bearer(world.id_token("user-a")), "Content-Type": "application/json"},
            json.dumps({"calendar_ids": ["bob@example.com"]}),
        ),
    )
    assert answer.status_code == 400, answer.text
    assert diff_snapshots(before, firestore_snapshot(db)) == []
    calls_after = world.google.control.counters()["by_method"]
    new_calls = {m: calls_after.get(m, 0) - calls_before.get(m, 0) for m in calls_after}
    assert {m: n for m, n in new_calls.items() if n and m != "oauth.token"} == {"calendar.calendarList.list": 1}


def test_the_cases_reach_the_functions_through_productions_doors(shared_world: World) -> None:
    """The harness sends as production's callers do: a user call without a token stops at the gateway (its own JSON,
    not ours); renew is admitted by Cloud Run IAM with the scheduler's token and answered by the function."""
    from shared.context import set_default_context
    from tests.hostile.harness import refused_by_a_door

    set_default_context(shared_world.ctx)
    assert shared_world.doors is not None
    stopped = send(shared_world, "sync_status", Req("GET", {}, None))
    assert stopped.status_code == 401 and refused_by_a_door(stopped), stopped.text
    assert stopped.json()["message"] == "Jwt is missing"
    admitted = send(shared_world, "renew", Req("GET"))
    assert admitted.status_code == 405 and not refused_by_a_door(admitted), admitted.text
    passed = send(shared_world, "sync_status", Req("GET", bearer(shared_world.id_token("user-a")), None))
    assert passed.status_code == 200, passed.text


def _event_with_decision(world: World, owner: str) -> tuple[str, str]:
    """A CRM event of `owner` on which Google won a content conflict (recorded as the pull records it)."""
    import datetime as dt

    from shared.models import ConflictDecision, CrmEvent, EventTime, utcnow
    from shared.sync.conflict_record import describe

    start = EventTime(date_time="2027-04-01T10:00:00Z")
    end = EventTime(date_time="2027-04-01T11:00:00Z")
    google_side = CrmEvent(id="conflicted", owner_id=owner, title="Google title", start=start, end=end)
    crm_side = google_side.model_copy(update={"title": "CRM title"})
    now = utcnow()
    decision = describe(
        ConflictDecision(
            at=now,
            winner="google",
            reason="Google's change is newer",
            crm_updated_at=now - dt.timedelta(minutes=1),
            google_updated=now,
        ),
        crm=crm_side,
        google=google_side,
    )
    google_side.sync.decisions = [decision]
    world.ctx.store.save_event(google_side)
    assert decision.id is not None
    return google_side.id, decision.id


def test_user_cannot_see_or_resolve_another_users_conflict(world: World) -> None:
    """B lists conflicts: A's is not there. B resolves A's conflict by its ids: 404 as if it did not exist, and the
    event (A's title, the decision unresolved) and Google are unchanged."""
    event_id, decision_id = _event_with_decision(world, "user-a")
    db = world.ctx.store.db
    before = firestore_snapshot(db)
    google_before = google_state(world.google)
    listed = send(world, "sync_conflicts", Req("GET", bearer(world.id_token("user-b"))))
    assert listed.status_code == 200 and listed.json()["conflicts"] == [], listed.text
    own = send(world, "sync_conflicts", Req("GET", bearer(world.id_token("user-a"))))
    assert [c["decision"] for c in own.json()["conflicts"]] == [decision_id]
    answer = send(
        world,
        "sync_resolve",
        Req(
            "POST",
            {**bearer(world.id_token("user-b")), "Content-Type": "application/json"},
            json.dumps({"event_id": event_id, "decision": decision_id, "keep": "crm"}),
        ),
    )
    assert answer.status_code == 404, answer.text
    assert "CRM title" not in answer.text and "user-a" not in answer.text
    assert diff_snapshots(before, firestore_snapshot(db)) == []
    assert google_state(world.google) == google_before


def test_stale_conflict_is_refused_and_changes_nothing(world: World) -> None:
    """The event was edited after the decision: keeping the other version would overwrite that edit -> 409."""
    event_id, decision_id = _event_with_decision(world, "user-a")
    world.ctx.store.update_event(event_id, {"title": "Edited since"})
    db = world.ctx.store.db
    before = firestore_snapshot(db)
    answer = send(
        world,
        "sync_resolve",
        Req(
            "POST",
            {**bearer(world.id_token("user-a")), "Content-Type": "application/json"},
            json.dumps({"event_id": event_id, "decision": decision_id, "keep": "crm"}),
        ),
    )
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"]["code"] == "conflict"
    assert diff_snapshots(before, firestore_snapshot(db)) == []


def test_settings_ui_serves_only_its_files_with_a_strict_csp(world: World) -> None:
    bare = send(world, "settings_ui", Req("GET"))
    assert bare.status_code == 302 and bare.headers["Location"] == "/settings/index.html"
    page = send(world, "settings_ui", Req("GET", path="index.html"))
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["Cache-Control"] == "no-cache" and page.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in page.text and " style=" not in page.text  # nothing inline
    module = send(world, "settings_ui", Req("GET", path="crm-calendar-sync.js"))
    assert module.status_code == 200 and module.headers["Content-Type"].startswith("text/javascript")
    assert "max-age=300" in module.headers["Cache-Control"]
    revalidate = Req("GET", {"If-None-Match": module.headers["ETag"]}, path="crm-calendar-sync.js")
    again = send(world, "settings_ui", revalidate)
    assert again.status_code == 304 and again.content == b""

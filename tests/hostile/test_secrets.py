"""Invariant 7: no refresh or access token in plaintext in Firestore or in the logs, after a whole real flow.

Flow, all over real HTTP against the served functions: OAuth connect (start -> the stand-in's consent -> callback),
enable, a Google edit (the stand-in's notification reaches the webhook, which pulls), a CRM edit pushed by the
CloudEvent function, an access-token expiry forcing a refresh, a renewal run, then disconnect (revocation). Every
token the stand-in ever issued, every channel token, the client secret and the encryption keys are then searched in
every string of every Firestore document (recursively, all collections) and in everything logged or printed.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import requests

from shared.models import calendar_key
from tests.hostile.probes import firestore_snapshot, issued_secrets
from tests.push.helpers import crm_event, post_written


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, bytes):
        return [value.decode("latin-1")]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def test_no_token_in_plaintext_after_a_full_flow(world: Any, logs: Any, capfd: Any) -> None:
    w = world
    google = w.google
    uid, email = "carol", "carol@example.com"
    google.control.create_account(email)
    token = w.id_token(uid, email=email)
    auth = {"Authorization": f"Bearer {token}"}

    start = requests.get(
        w.url("oauth_start"), headers={**auth, "Accept": "application/json"}, params={"login_hint": email}, timeout=30
    )
    assert start.status_code == 200, start.text
    consent = requests.get(start.json()["authorization_url"], allow_redirects=False, timeout=30)
    assert consent.status_code == 302, consent.text
    query = urllib.parse.urlsplit(consent.headers["Location"]).query
    handoff = requests.get(w.url("oauth_callback") + "?" + query, timeout=60, allow_redirects=False)
    assert handoff.status_code == 200, handoff.text
    connected = requests.post(
        w.url("oauth_callback"),
        headers=auth,
        timeout=60,
        json={"code": handoff.json()["google_code"], "state": handoff.json()["google_state"]},
    )
    assert connected.status_code == 200, connected.text

    enabled = requests.post(w.url("sync_enable"), headers=auth, json={}, timeout=60)
    assert enabled.status_code in (200, 202), enabled.text
    google.control.flush(timeout=20)

    google.control.create_event(
        email,
        {
            "summary": "from google",
            "start": {"dateTime": "2027-04-01T09:00:00Z"},
            "end": {"dateTime": "2027-04-01T10:00:00Z"},
        },
    )
    google.control.flush(timeout=20)
    titles = [d.to_dict().get("title") for d in w.ctx.store.db.collection("events").stream()]
    assert "from google" in titles

    google.control.expire_access_tokens()  # the next call refreshes: a new access token is issued
    event = crm_event("crm-carol", owner_id=uid, title="from the crm")
    w.ctx.store.save_event(event)
    pushed = post_written(w.served["push_event"].url, w.ctx.settings.project_id, event.id, new={"title": "x"})
    assert pushed.status_code == 200, pushed.text
    assert any(e.get("summary") == "from the crm" for e in google.control.raw_events(email))

    renewed = requests.post(w.url("renew"), json={}, timeout=120)
    assert renewed.status_code == 200, renewed.text
    status = requests.get(w.url("sync_status"), headers=auth, timeout=30)
    assert status.status_code == 200 and status.json()["connected"], status.text
    cal = w.ctx.store.get_calendar(uid, calendar_key(email))
    assert cal is not None and cal.channel is not None

    disconnected = requests.post(w.url("oauth_disconnect"), headers=auth, json={}, timeout=60)
    assert disconnected.status_code == 200, disconnected.text

    secrets = issued_secrets(google, w.ctx.settings)
    kinds = set(secrets.values())
    assert {"refresh token", "access token", "channel token"} <= kinds, kinds
    assert sum(1 for v in secrets.values() if v == "access token") >= 2  # the refresh really happened

    documents = firestore_snapshot(w.ctx.store.db)
    assert any(path.startswith("integrations/carol") for path in documents)
    for path, (_, data) in documents.items():
        for text in [path, *_strings(data)]:
            for secret, what in secrets.items():
                assert secret not in text, f"a {what} is stored in plaintext in {path}"

    captured = capfd.readouterr()
    logged = logs.text() + captured.out + captured.err
    assert "google account connected" in logged  # the capture does see the functions' logs
    for secret, what in secrets.items():
        assert secret not in logged, f"a {what} appears in the logs"
    # The OAuth code and state travelled in the callback's query string: no access line or log record repeats them.
    for value, what in ((handoff.json()["google_code"], "OAuth code"), (handoff.json()["google_state"], "OAuth state")):
        assert urllib.parse.quote(value, safe="") not in logged and value not in logged, f"the {what} is logged"
    assert "\x1b[" not in logged, "ANSI colour codes in a log line"
    for answer in (start, connected, enabled, status, renewed, disconnected):
        text = answer.text + json.dumps(dict(answer.headers))
        for secret, what in secrets.items():
            assert secret not in text, f"a {what} appears in an HTTP answer"

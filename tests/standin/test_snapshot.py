"""The stand-in's snapshot (what `make run` saves and loads across restarts): a stand-in started from it answers as
the saved one did — the same events, sync tokens handed out before still valid, refresh tokens still exchanged, ID
tokens minted before still verifying, channels still known — and the file on disk is never half written."""

from __future__ import annotations

import json
from pathlib import Path

import requests
from google.auth.transport.requests import Request
from google.oauth2 import id_token

from infra.google_standin.control import ControlClient
from infra.google_standin.server import start_standin
from infra.google_standin.snapshot import PeriodicSnapshots, load, save
from tests.fixtures.google import TEST_OPTIONS, GoogleStandin
from tests.standin.helpers import ALICE, timed


def _events(google: GoogleStandin) -> list[dict]:
    service = google.service_for(ALICE)
    return service.events().list(calendarId="primary", showDeleted=True).execute()["items"]


def test_a_restarted_stand_in_answers_as_the_saved_one(tmp_path: Path) -> None:
    first = start_standin("127.0.0.1", 0, **TEST_OPTIONS)
    try:
        google = GoogleStandin(first, ControlClient(first.base_url))
        google.control.create_account(ALICE)
        service = google.service_for(ALICE)
        kept = (
            service.events()
            .insert(calendarId="primary", body=timed("2027-01-05T10:00:00Z", "2027-01-05T11:00:00Z"))
            .execute()
        )
        token = service.events().list(calendarId="primary").execute()["nextSyncToken"]
        later = (
            service.events()
            .insert(calendarId="primary", body=timed("2027-01-06T10:00:00Z", "2027-01-06T11:00:00Z"))
            .execute()
        )
        refresh_token = google.control.issue_refresh_token(ALICE, first.client_id)
        minted = google.control.mint_id_token("crm-user", "my-project")
        channel = (
            service.events()
            .watch(
                calendarId="primary", body={"id": "chan-1", "type": "web_hook", "address": "http://127.0.0.1:9/hook"}
            )
            .execute()
        )
        before = _events(google)
        path = tmp_path / "standin.json"
        assert save(first.standin, path)
        assert not save(first.standin, path)  # unchanged: not rewritten
    finally:
        first.stop()

    second = start_standin("127.0.0.1", 0, **TEST_OPTIONS)
    try:
        assert load(second.standin, path)
        google = GoogleStandin(second, ControlClient(second.base_url))
        assert _events(google) == before
        service = google.service_for(ALICE)
        # The sync token from before the restart still lists exactly what changed after it.
        changed = service.events().list(calendarId="primary", syncToken=token).execute()["items"]
        assert [e["id"] for e in changed] == [later["id"]]
        assert kept["id"] not in [e["id"] for e in changed]
        # The refresh token issued before the restart is still exchanged for an access token.
        answer = requests.post(
            second.token_uri,
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": second.client_id,
                "client_secret": second.client_secret,
            },
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        # An ID token minted before the restart verifies against the certificates served after it.
        claims = id_token.verify_token(minted, Request(), audience="my-project", certs_url=second.certs_url)
        assert claims["sub"] == "crm-user"
        # The channel is still known: stopping it with its resource id works (an unknown one is a 404).
        service.channels().stop(body={"id": "chan-1", "resourceId": channel["resourceId"]}).execute()
    finally:
        second.stop()


def test_periodic_snapshots_replace_the_file_whole(tmp_path: Path) -> None:
    handle = start_standin("127.0.0.1", 0, **TEST_OPTIONS)
    path = tmp_path / "standin.json"
    snapshots = PeriodicSnapshots(handle.standin, path, interval_s=0.05).start()
    try:
        control = ControlClient(handle.base_url)
        control.create_account(ALICE)
        for n in range(30):
            control.create_event(
                ALICE, timed(f"2027-02-{1 + n % 27:02d}T10:00:00Z", f"2027-02-{1 + n % 27:02d}T11:00:00Z")
            )
            if path.exists():
                json.loads(path.read_bytes())  # always a whole document, never a half-written one
    finally:
        snapshots.stop()  # writes a last snapshot
        handle.stop()
    saved = json.loads(path.read_bytes())
    (calendar,) = [c for c in saved["store"]["calendars"] if c["id"] == ALICE]
    assert len(calendar["events"]) == 30
    assert not list(tmp_path.glob("*.tmp"))

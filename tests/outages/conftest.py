"""Fixtures for Firestore outages: the functions and the library talk to the emulator through the fault proxy
(infra/firestore_faults.py), which the tests switch between forwarding and refusing; the stand-in is Google."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from infra.firestore_emulator import FirestoreEmulator
from infra.firestore_faults import FirestoreFaultProxy
from shared.config import Settings
from tests.fixtures.functions import ServedFunction, serve_function
from tests.fixtures.sync import make_settings


@pytest.fixture(scope="session")
def firestore_faults(firestore_emulator: FirestoreEmulator) -> Iterator[FirestoreFaultProxy]:
    proxy = FirestoreFaultProxy(firestore_emulator.host).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def firestore_db(firestore_project: str, firestore_faults: FirestoreFaultProxy) -> Iterator[Any]:
    """The test's Firestore client, connected through the proxy (the client reads the emulator host once, here)."""
    from google.cloud import firestore

    firestore_faults.clear()
    direct = os.environ["FIRESTORE_EMULATOR_HOST"]
    os.environ["FIRESTORE_EMULATOR_HOST"] = firestore_faults.host
    try:
        client = firestore.Client(project=firestore_project)
    finally:
        os.environ["FIRESTORE_EMULATOR_HOST"] = direct
    yield client
    firestore_faults.clear()
    client.close()


@pytest.fixture(scope="session")
def served() -> Iterator[dict[str, ServedFunction]]:
    functions = {
        "webhook": serve_function("webhook"),
        "renew": serve_function("renew"),
        "push_event": serve_function("push_event", "cloudevent"),
    }
    try:
        yield functions
    finally:
        for function in functions.values():
            function.stop()


@pytest.fixture
def sync_settings(firestore_project: str, google: Any, served: dict[str, ServedFunction]) -> Settings:
    """Short leases so a pull interrupted by an outage does not hold its calendar for the default two minutes."""
    return make_settings(
        firestore_project, google, webhook_url=served["webhook"].url + "/", sync_lease_seconds=5, renewal_concurrency=1
    )

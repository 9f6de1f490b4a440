"""Fixtures for push tests: the real push_event CloudEvent function served over HTTP, a connected owner."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures.functions import ServedFunction, serve_function
from tests.fixtures.sync import connect_user
from tests.push.helpers import EMAIL, OWNER


@pytest.fixture
def push_fn(app_context: Any) -> Iterator[ServedFunction]:
    served = serve_function("push_event", "cloudevent")
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture
def owner(app_context: Any, google: Any) -> Any:
    return connect_user(app_context, google, OWNER, EMAIL)

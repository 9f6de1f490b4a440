"""shared/store.py `retry_if_changed`: the one read → plan → write-if-unchanged loop (no I/O needed to test it)."""

from __future__ import annotations

import random

import pytest

from shared.errors import DocumentChanged, DocumentMissing, KeptChanging
from shared.store import RETRY_ATTEMPTS, RETRY_INITIAL_SLEEP, RETRY_MAX_SLEEP, retry_if_changed


def test_a_lost_precondition_is_retried_after_a_jittered_growing_pause_until_it_sticks() -> None:
    sleeps: list[float] = []
    attempts: list[int] = []

    def attempt() -> str:
        attempts.append(len(attempts) + 1)
        if len(attempts) < 3:
            raise DocumentChanged("a concurrent write landed")
        return "stored"

    assert retry_if_changed(attempt, sleep=sleeps.append, what="test", rng=random.Random(4)) == "stored"
    assert attempts == [1, 2, 3]
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= RETRY_INITIAL_SLEEP and 0 <= sleeps[1] <= 2 * RETRY_INITIAL_SLEEP


def test_giving_up_is_a_typed_error_after_the_one_limit_with_bounded_pauses() -> None:
    sleeps: list[float] = []
    calls = {"n": 0}

    def attempt() -> None:
        calls["n"] += 1
        raise DocumentMissing("gone meanwhile")  # a DocumentChanged too

    with pytest.raises(KeptChanging) as info:
        retry_if_changed(attempt, sleep=sleeps.append, what="push write-back", attempts=7, rng=random.Random(1))
    assert calls["n"] == 7 and len(sleeps) == 6  # no pause after the last attempt
    assert all(0 <= pause <= RETRY_MAX_SLEEP for pause in sleeps)
    assert info.value.retryable and info.value.detail == {"attempts": 7}
    assert RETRY_ATTEMPTS >= 2


def test_other_errors_are_not_retried() -> None:
    calls = {"n": 0}

    def attempt() -> None:
        calls["n"] += 1
        raise ValueError("a bug, not a race")

    with pytest.raises(ValueError):
        retry_if_changed(attempt, sleep=lambda _: None, what="test")
    assert calls["n"] == 1

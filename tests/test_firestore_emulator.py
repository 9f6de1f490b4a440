"""The Firestore harness talks to the real emulator: transactions conflict, retry, and lose nothing."""

from __future__ import annotations

import contextlib
import threading

from google.cloud import firestore


def test_conflicting_transactions_are_retried_and_lose_no_increment(firestore_db: firestore.Client) -> None:
    counter = firestore_db.collection("counters").document("c")
    counter.set({"value": 0})
    both_read = threading.Barrier(2, timeout=30)
    attempts: list[str] = []
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        @firestore.transactional
        def increment(transaction: firestore.Transaction) -> None:
            attempts.append(name)
            snapshot = counter.get(transaction=transaction)
            if attempts.count(name) == 1:
                with contextlib.suppress(threading.BrokenBarrierError):
                    both_read.wait()  # both transactions have read the same value before either writes
            transaction.update(counter, {"value": snapshot.get("value") + 1})

        try:
            increment(firestore_db.transaction(max_attempts=20))
        except BaseException as exc:  # surfaced by the assertions below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors, errors
    assert counter.get().get("value") == 2  # no lost update
    assert len(attempts) > 2  # the conflict really happened and one transaction was retried


def test_projects_are_isolated_and_reset_works(firestore_db: firestore.Client, firestore_emulator) -> None:
    other = firestore.Client(project=firestore_db.project + "-other")
    firestore_db.collection("x").document("a").set({"v": 1})
    assert not other.collection("x").document("a").get().exists
    firestore_emulator.reset(firestore_db.project)
    assert not firestore_db.collection("x").document("a").get().exists

"""Test-run wiring: the real Firestore emulator, the Google Calendar stand-in, and functions served over HTTP."""

pytest_plugins = ["tests.fixtures.firestore", "tests.fixtures.google", "tests.fixtures.sync"]

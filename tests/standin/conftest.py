"""Stand-in conformance tests: load the stand-in fixtures here until tests/conftest.py registers the plugin."""

from tests.fixtures.google import GoogleStandin, google, google_standin_server  # noqa: F401

"""Access lines of the local HTTP servers (the dev stack, the tests, the load run) as Cloud Logging reads them.

werkzeug's own request handler writes the whole request line, query string included, with ANSI colour codes, as a
message string. The OAuth callback's query carries Google's authorization `code` and our signed `state`, which must
stay out of every log we control; so each request is logged here as one JSON object (`method`, `path` without the
query, `status`) and werkzeug's other lines are stripped of colours and queries.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from werkzeug.serving import WSGIRequestHandler

from shared.logs import log_event

logger = logging.getLogger("infra.access")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_QUERY = re.compile(r"\?[^\s\"']*")


def scrub(text: str) -> str:
    """Remove ANSI colour codes and every query string from a log line."""
    return _QUERY.sub("?[query omitted]", _ANSI.sub("", text))


class AccessLogRequestHandler(WSGIRequestHandler):
    """A werkzeug request handler whose log lines never carry a query string or colour codes."""

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        path, _, query = getattr(self, "path", "").partition("?")
        status = int(code) if isinstance(code, int) or str(code).isdigit() else str(code)
        log_event(logger, "request", method=self.command, path=path, status=status, query_omitted=bool(query))

    def log(self, type: str, message: str, *args: Any) -> None:
        level = {"error": logging.ERROR, "warning": logging.WARNING}.get(type, logging.INFO)
        text = message % args if args else message
        log_event(logger, scrub(text).strip(), level=level, client=self.address_string())

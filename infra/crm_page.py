"""The local stand-in for the CRM's calendar settings page, where the OAuth callback returns the browser.

Production's CRM page does the same: Google's redirect lands on the callback, which sends the browser here with
`#google_code=...&google_state=...`; this page posts them back to `oauth_callback` with the signed-in user's ID token
(here the dev stack's demo user), which is what binds the connection to that user. `?google=error&reason=...` shows
why a connection did not happen.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterable
from typing import Any

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>CRM - Google Calendar</title>
<meta name="referrer" content="no-referrer"></head>
<body><h1>Google Calendar</h1><pre id="result">__INITIAL__</pre>
<script>
const idToken = __TOKEN__;
const callback = __CALLBACK__;
const handoff = new URLSearchParams(location.hash.slice(1));
history.replaceState(null, "", location.pathname + location.search);
const result = document.getElementById("result");
if (handoff.get("google_code") && handoff.get("google_state")) {
  fetch(callback, {method: "POST", headers: {"Authorization": "Bearer " + idToken,
                   "Content-Type": "application/json"},
                   body: JSON.stringify({code: handoff.get("google_code"), state: handoff.get("google_state")})})
    .then(r => r.json()).then(body => { result.textContent = JSON.stringify(body, null, 2); });
}
</script></body></html>
"""


def crm_settings_page(id_token: str, callback_url: str) -> Callable[[dict[str, Any], Any], Iterable[bytes]]:
    """A WSGI app serving the page for one signed-in user."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        query = environ.get("QUERY_STRING", "")
        initial = f"Google did not connect: {query}" if "google=error" in query else "Finishing the connection..."
        body = (
            PAGE.replace("__TOKEN__", json.dumps(id_token))
            .replace("__CALLBACK__", json.dumps(callback_url))
            .replace("__INITIAL__", html.escape(initial))
            .encode()
        )
        headers = [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Referrer-Policy", "no-referrer"),
        ]
        start_response("200 OK", headers)
        return [body]

    return app

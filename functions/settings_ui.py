"""`settings_ui`: serves the settings component's static files (functions/web) with a strict CSP and cache headers.

Why a function behind the gateway and not a bucket: the page then shares the API's origin (no CORS for the
standalone page, `connect-src 'self'`), and Cloud Storage serves only fixed object metadata headers (Cache-Control,
Content-Type...), not a Content-Security-Policy, which would need a load balancer in front of a bucket. The files are
read once per instance and answered from memory with an ETag; a CRM embedding the component loads the module from here.

Only the listed files are served; the last path segment names the file (the gateway appends the request path), so
nothing outside functions/web can ever be read.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

from functions.http import handle
from shared.errors import MethodNotAllowed, NotFound

WEB_DIR = Path(__file__).resolve().parent / "web"
PAGE = "index.html"
# The gateway route of the page (terraform/locals.tf settings_ui.path): the bare route is redirected to the page's
# full URL, so the page's relative script and style URLs resolve under /settings/.
PAGE_URL = "/settings/" + PAGE
ASSETS: dict[str, str] = {
    PAGE: "text/html; charset=utf-8",
    "host.js": "text/javascript; charset=utf-8",
    "host.css": "text/css; charset=utf-8",
    "crm-calendar-sync.js": "text/javascript; charset=utf-8",
    "crm-calendar-sync.css": "text/css; charset=utf-8",
}
# The page loads only its own scripts and styles and talks only to its own origin (the gateway); nothing may frame it.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
# The page revalidates every time (a deploy shows at once); scripts and styles are reused for 5 minutes, then
# revalidated by ETag (they keep stable names, so long immutable caching would pin old code in embedding CRMs).
PAGE_CACHE = "no-cache"
ASSET_CACHE = "public, max-age=300, must-revalidate"
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


@functools.cache
def asset(name: str) -> tuple[bytes, str]:
    """The file's bytes and its strong ETag, read once per instance."""
    body = (WEB_DIR / name).read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def asset_name(path: str) -> str:
    last = path.rstrip("/").rsplit("/", 1)[-1] if not path.endswith("/") else ""
    return PAGE if last in ("", "settings_ui", "settings") else last


def _serve(request: Any) -> Any:
    if request.method not in ("GET", "HEAD"):
        raise MethodNotAllowed("use GET", allowed=["GET", "HEAD"])
    name = asset_name(request.path)
    if name == PAGE and not request.path.endswith(PAGE):
        return "", 302, {"Location": PAGE_URL, "Cache-Control": "no-cache"}
    if name not in ASSETS:
        raise NotFound("no such file", files=sorted(ASSETS))
    body, etag = asset(name)
    headers = {
        **SECURITY_HEADERS,
        "Content-Type": ASSETS[name],
        "Cache-Control": PAGE_CACHE if name == PAGE else ASSET_CACHE,
        "ETag": etag,
    }
    if name != PAGE:
        # A CRM on another origin loads the module and its stylesheet from here.
        headers["Access-Control-Allow-Origin"] = "*"
    if etag in [tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")]:
        return "", 304, headers
    return (b"" if request.method == "HEAD" else body), 200, headers


def handle_request(request: Any) -> Any:
    return handle(request, _serve, name="settings_ui")

"""HTTP front of the stand-in: routing for the calendar API, OAuth, certs and the control API."""

from __future__ import annotations

import json
import logging
import secrets
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import fields as field_selector
from .api import CalendarApi, Call
from .clock import Clock
from .control_api import ControlApi
from .discovery import SERVICE_PATH, Discovery
from .errors import ApiError, bad_request
from .limits import Limits
from .oauth import OAuthError, OAuthServer
from .options import StandinOptions
from .push import PushManager
from .store import EventStore

log = logging.getLogger("google_standin.server")
CERTS_PATH = "/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com"
MAX_BODY = 10 * 1024 * 1024


class Standin:
    """All state of one stand-in instance; `reset()` brings it back to the start options."""

    def __init__(self, **options: Any) -> None:
        self.start_options = dict(options)
        self.options = StandinOptions()
        self.options.update(options)
        self.clock = Clock()
        self.discovery = Discovery()
        self.store = EventStore(self.clock, self.options)
        self.oauth = OAuthServer(self.clock, self.options)
        self.limits = Limits(self.clock, self.options)
        self.push = PushManager(self.clock, self.options, secret=secrets.token_hex(8))
        self.store.on_change = self._changed
        self.api = CalendarApi(self.store, self.push)
        self.control = ControlApi(self)

    def _changed(self, target: str, kind: str) -> None:
        self.push.notify(kind, target)

    def reset(self) -> None:
        """Forget everything: accounts, tokens, channels, faults, counters, clock skew, options."""
        self.push.flush(timeout=2)
        fresh = StandinOptions()
        fresh.update(self.start_options)
        self.options.update(fresh.as_dict())
        self.clock.reset()
        self.store.reset()
        self.oauth.reset()
        self.limits.reset()
        self.push.reset()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "GoogleStandin/1.0"
    standin: Standin  # set on the subclass made per server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without NODELAY, Nagle + delayed ACK adds ~40 ms per call.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http", extra={"line": format % args})

    # -- plumbing --------------------------------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise bad_request("Request body too large.")
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None,
              content_type: str = "application/json; charset=UTF-8") -> None:
        payload = b""
        if body is not None and status not in (204, 304):
            payload = body if isinstance(body, bytes) else json.dumps(body, indent=1).encode()
        self.send_response(status)
        if payload:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    def _dispatch(self, http_method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        try:
            if path.startswith(SERVICE_PATH):
                self._api(http_method, path[len(SERVICE_PATH):], url.query)
            elif path.startswith("/_control/") or path == "/_control":
                body = self._read_body()
                status, payload = self.standin.control.handle(http_method, path, url.query, body)
                self._send(status, payload)
            elif path == "/token" and http_method == "POST":
                self._token()
            elif path == "/o/oauth2/v2/auth" and http_method == "GET":
                self._authorize(url.query)
            elif path in ("/revoke", "/o/oauth2/revoke") and http_method in ("POST", "GET"):
                self._revoke(url.query)
            elif path in (CERTS_PATH, "/oauth2/v1/certs") and http_method == "GET":
                self._send(200, self.standin.oauth.certs(), {"Cache-Control": "public, max-age=19000"})
            elif path == "/healthz":
                self._send(200, {"ok": True})
            else:
                self._send(404, ApiError(404, "notFound", "Not Found").body())
        except ApiError as error:
            self._send(error.code, error.body(), error.headers)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:
            log.exception("unhandled error", extra={"path": path, "method": http_method})
            self._send(500, ApiError(500, "backendError", "Backend Error").body())

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- calendar API ----------------------------------------------------------------------------------------------
    def _api(self, http_method: str, relative: str, raw_query: str) -> None:
        standin = self.standin
        raw_body = self._read_body()
        method, path_params = standin.discovery.route(http_method, relative)
        delay = standin.limits.delay_for(method.method_id)
        if delay:
            time.sleep(delay)
        query_lists = urllib.parse.parse_qs(raw_query, keep_blank_values=True)
        account = None
        status = 500
        try:
            oauth_query = (query_lists.get("oauth_token") or query_lists.get("access_token") or [None])[0]
            query_lists.pop("access_token", None)
            access = standin.oauth.authenticate(self.headers.get("Authorization"), oauth_query)
            account = access.email
            standin.limits.count(method.method_id, account)
            standin.oauth.check_scopes(access, method.scopes)
            standin.limits.check_quota(account)
            fault = standin.limits.pick_fault(method.method_id)
            if fault is not None:
                raise fault
            query = standin.discovery.parse_query(method, query_lists)
            body = None
            if method.request_schema:
                try:
                    body = json.loads(raw_body or b"{}")
                except ValueError as error:
                    raise bad_request("Parse Error") from error
                standin.discovery.check_body(method.request_schema, body)
            call = Call(method.method_id, path_params, query, body, {k.lower(): v for k, v in self.headers.items()},
                        access)
            result = standin.api.handle(call)
            payload = result.body
            if payload is not None and query.get("fields"):
                try:
                    payload = field_selector.apply(payload, field_selector.parse(query["fields"]))
                except ValueError as error:
                    raise ApiError(400, "invalidParameter", "Invalid field selection", location="fields",
                                   location_type="parameter") from error
            status = result.status
            self._send(result.status, payload, result.headers)
            for callback in call.after_response:
                callback()
        except ApiError as error:
            status = error.code
            if account is None:
                standin.limits.count(method.method_id, None)
            raise
        finally:
            standin.limits.count_status(status)
            log.info("api_call", extra={"method_id": method.method_id, "account": account, "status": status})

    # -- OAuth -----------------------------------------------------------------------------------------------------
    def _token(self) -> None:
        raw = self._read_body().decode()
        form = {k: v[0] for k, v in urllib.parse.parse_qs(raw, keep_blank_values=True).items()}
        basic = self.headers.get("Authorization", "")
        if basic.lower().startswith("basic ") and "client_id" not in form:
            import base64

            client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
            form.setdefault("client_id", urllib.parse.unquote(client_id))
            form.setdefault("client_secret", urllib.parse.unquote(secret))
        try:
            body, email = self.standin.oauth.token(form)
            self.standin.limits.count("oauth.token", email)
            self._send(200, body, {"Cache-Control": "no-store", "Pragma": "no-cache"})
        except OAuthError as error:
            self.standin.limits.count("oauth.token", None)
            self._send(error.status, error.body)

    def _authorize(self, raw_query: str) -> None:
        query = {k: v[0] for k, v in urllib.parse.parse_qs(raw_query).items()}
        standin = self.standin
        email = (query.get("login_hint") or standin.oauth.current_user or "").lower()
        if email and email not in standin.store.accounts and standin.options.auto_create_accounts:
            standin.store.create_account(email)
        try:
            redirect_uri, params = standin.oauth.authorize(query)
        except ValueError as error:
            self._send(400, f"Error 400: {error}".encode(), content_type="text/plain; charset=utf-8")
            return
        separator = "&" if urllib.parse.urlsplit(redirect_uri).query else "?"
        self._send(302, None, {"Location": redirect_uri + separator + urllib.parse.urlencode(params)})

    def _revoke(self, raw_query: str) -> None:
        raw = self._read_body().decode()
        values = urllib.parse.parse_qs(raw_query) | urllib.parse.parse_qs(raw)
        token = (values.get("token") or [""])[0]
        if self.standin.oauth.revoke(token):
            self._send(200, {})
        else:
            self._send(400, {"error": "invalid_token", "error_description": "Token expired or revoked"})


@dataclass
class StandinHandle:
    """A running stand-in: URLs to point clients at, the control client, and `stop()`."""

    standin: Standin
    server: ThreadingHTTPServer
    thread: threading.Thread
    base_url: str

    @property
    def api_endpoint(self) -> str:
        """Pass as client_options={"api_endpoint": ...}: build() uses it instead of rootUrl+servicePath."""
        return self.base_url + SERVICE_PATH

    @property
    def token_uri(self) -> str:
        return self.base_url + "/token"

    @property
    def auth_uri(self) -> str:
        return self.base_url + "/o/oauth2/v2/auth"

    @property
    def revoke_uri(self) -> str:
        return self.base_url + "/revoke"

    @property
    def certs_url(self) -> str:
        return self.base_url + CERTS_PATH

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def client_id(self) -> str:
        return self.standin.options.default_client_id

    @property
    def client_secret(self) -> str:
        return self.standin.options.default_client_secret

    @property
    def control(self):
        from .control import ControlClient

        return ControlClient(self.base_url)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.standin.push.shutdown()
        self.thread.join(timeout=5)


def start_standin(host: str = "127.0.0.1", port: int = 0, **options: Any) -> StandinHandle:
    """Start the stand-in in a background thread (port 0 = a free port); options are StandinOptions fields."""
    standin = Standin(**options)
    handler = type("BoundHandler", (Handler,), {"standin": standin})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    standin.push.start()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="google-standin", daemon=True)
    thread.start()
    bound_host = host if ":" not in host else f"[{host}]"
    handle = StandinHandle(standin, server, thread, f"http://{bound_host}:{server.server_address[1]}")
    log.info("standin_started", extra={"url": handle.base_url, "api_endpoint": handle.api_endpoint})
    return handle

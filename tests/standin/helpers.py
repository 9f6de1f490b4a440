"""Shared helpers for the stand-in conformance tests: raw HTTP calls and a push receiver."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests
from googleapiclient.errors import HttpError

from tests.fixtures.google import GoogleStandin

ALICE = "alice@example.com"


def timed(start: str, end: str, **extra: Any) -> dict[str, Any]:
    return {"summary": "Meeting", "start": {"dateTime": start}, "end": {"dateTime": end}, **extra}


def error_of(excinfo: Any) -> tuple[int, dict[str, Any]]:
    """(status, parsed body) of a googleapiclient HttpError."""
    error: HttpError = excinfo.value
    return error.resp.status, json.loads(error.content)


def reason_of(body: dict[str, Any]) -> str:
    return body["error"]["errors"][0]["reason"]


class Raw:
    """Plain `requests` calls with a bearer token, for what googleapiclient would refuse to send."""

    def __init__(self, google: GoogleStandin, email: str = ALICE, scopes: list[str] | None = None) -> None:
        self.google = google
        self.token = google.control.issue_access_token(email, scopes=scopes)

    def __call__(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", {})
        headers.setdefault("Authorization", f"Bearer {self.token}")
        return requests.request(method, self.google.api_endpoint + path, headers=headers, timeout=10, **kwargs)


class Receiver:
    """A tiny webhook endpoint that records Google's push requests and answers a scripted status."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []  # consumed one per request; default 200
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.requests.append({"headers": dict(self.headers), "body": body, "path": self.path})
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def states(self) -> list[str]:
        with self.lock:
            return [r["headers"]["X-Goog-Resource-State"] for r in self.requests]

    def numbers(self) -> list[int]:
        with self.lock:
            return [int(r["headers"]["X-Goog-Message-Number"]) for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

"""A gRPC proxy in front of the Firestore emulator that tests use to stage Firestore outages.

Every call is forwarded byte for byte (no protobuf decoding: requests and responses stay serialized, metadata passes
through) to the emulator, so the clients behave exactly as against the emulator itself, until a fault is switched on:
then the matching calls are answered with the chosen gRPC status without reaching the emulator, for a number of
calls, for a period, or until cleared. The statuses are those Firestore documents as transient and retryable
(UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, RESOURCE_EXHAUSTED: https://firebase.google.com/docs/firestore/understand-error-codes
and https://cloud.google.com/firestore/docs/understand-error-codes), plus any other a test asks for.

A call the fault refuses changes nothing in the emulator, which is the least forgiving reading of an outage for the
caller (it cannot tell whether a refused commit happened, and must retry). A fault refuses calls as they start;
streams already open (a listener's Listen) go on. The emulator's own REST endpoints (reset, export) are not proxied:
point those at the emulator.

    proxy = FirestoreFaultProxy(emulator_host).start()   # then FIRESTORE_EMULATOR_HOST=proxy.host
    proxy.inject("UNAVAILABLE", seconds=30)               # or calls=3, or neither (until clear())
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc

SERVICE = "/google.firestore.v1.Firestore/"
# Firestore v1's streaming methods (google/firestore/v1/firestore.proto); every other method is unary.
SERVER_STREAMING = {"BatchGetDocuments", "RunQuery", "RunAggregationQuery", "ExecutePipeline"}
BIDI_STREAMING = {"Write", "Listen"}
TRANSIENT = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED", "RESOURCE_EXHAUSTED")


@dataclass
class Fault:
    code: grpc.StatusCode
    calls_left: int | None  # None: no count limit
    until: float | None  # time.monotonic() deadline; None: no time limit
    methods: frozenset[str] | None  # short method names; None: every method

    def matches(self, method: str, now: float) -> bool:
        if self.until is not None and now >= self.until:
            return False
        if self.calls_left is not None and self.calls_left <= 0:
            return False
        return self.methods is None or method in self.methods


class FirestoreFaultProxy(grpc.GenericRpcHandler):
    """Forwards Firestore gRPC calls to `upstream` (host:port) and refuses them while a fault is on."""

    def __init__(self, upstream: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream = upstream
        self._bind = f"{host}:{port}"
        self._lock = threading.Lock()
        self._fault: Fault | None = None
        self.refused: Counter[str] = Counter()  # method -> calls answered with the fault
        self.forwarded: Counter[str] = Counter()  # method -> calls passed to the emulator
        self._channel = grpc.insecure_channel(upstream)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="firestore-proxy"))
        self._server.add_generic_rpc_handlers((self,))
        self.host = ""

    # -- control -------------------------------------------------------------------------------------------------------
    def start(self) -> FirestoreFaultProxy:
        port = self._server.add_insecure_port(self._bind)
        self._server.start()
        self.host = f"{self._bind.rsplit(':', 1)[0]}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop(grace=None).wait(5)
        self._channel.close()

    def inject(
        self,
        code: str | grpc.StatusCode,
        *,
        calls: int | None = None,
        seconds: float | None = None,
        methods: set[str] | None = None,
    ) -> None:
        """Answer matching calls with `code` for `calls` calls and/or `seconds` seconds (neither: until clear()).
        Counts of refused and forwarded calls start again from zero."""
        status = code if isinstance(code, grpc.StatusCode) else grpc.StatusCode[code]
        until = time.monotonic() + seconds if seconds is not None else None
        with self._lock:
            self.refused.clear()
            self.forwarded.clear()
            self._fault = Fault(status, calls, until, frozenset(methods) if methods else None)

    def clear(self) -> None:
        with self._lock:
            self._fault = None

    def active(self, method: str = "Commit") -> bool:
        """Whether a call of `method` made now would be refused."""
        with self._lock:
            return self._fault is not None and self._fault.matches(method, time.monotonic())

    def _take_fault(self, method: str) -> grpc.StatusCode | None:
        with self._lock:
            fault = self._fault
            if fault is None or not fault.matches(method, time.monotonic()):
                self.forwarded[method] += 1
                return None
            if fault.calls_left is not None:
                fault.calls_left -= 1
            self.refused[method] += 1
            return fault.code

    # -- gRPC plumbing -------------------------------------------------------------------------------------------------
    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        full = handler_call_details.method
        method = full.rsplit("/", 1)[-1]
        if method in BIDI_STREAMING:
            stream_stream = self._channel.stream_stream(full)
            return grpc.stream_stream_rpc_method_handler(
                lambda requests, context: self._streamed(method, stream_stream, requests, context)
            )
        if method in SERVER_STREAMING:
            unary_stream = self._channel.unary_stream(full)
            return grpc.unary_stream_rpc_method_handler(
                lambda request, context: self._streamed(method, unary_stream, request, context)
            )
        unary_unary = self._channel.unary_unary(full)
        return grpc.unary_unary_rpc_method_handler(
            lambda request, context: self._unary(method, unary_unary, request, context)
        )

    @staticmethod
    def _metadata(context: grpc.ServicerContext) -> list[tuple[str, Any]]:
        return [(k, v) for k, v in context.invocation_metadata() if not k.startswith(":") and k != "user-agent"]

    def _refuse(self, method: str, context: grpc.ServicerContext) -> None:
        code = self._take_fault(method)
        if code is not None:
            context.abort(code, f"injected fault: {code.name}")

    def _unary(self, method: str, upstream: Any, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._refuse(method, context)
        try:
            response, call = upstream.with_call(
                request, timeout=context.time_remaining(), metadata=self._metadata(context)
            )
        except grpc.RpcError as error:
            context.abort(error.code(), error.details() or "")
        context.set_trailing_metadata(call.trailing_metadata() or ())
        return bytes(response)

    def _streamed(self, method: str, upstream: Any, request: Any, context: grpc.ServicerContext) -> Iterator[bytes]:
        self._refuse(method, context)
        responses = upstream(request, timeout=context.time_remaining(), metadata=self._metadata(context))
        context.add_callback(responses.cancel)
        try:
            yield from responses
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED or context.is_active():
                context.abort(error.code(), error.details() or "")

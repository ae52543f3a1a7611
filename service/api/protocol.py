"""uvicorn's h11 protocol with the two slow-client guards uvicorn does not have.

uvicorn (0.55) cuts a connection only when it idles *between* requests (`timeout_keep_alive`); a client
that connects and sends nothing, or sends half a request line, holds its connection (and a slot of any
connection limit) for as long as it likes: a slowloris exposure (uvicorn issues #1230 / discussion
#2179; `limit_concurrency` refuses *new* requests, it does not cut slow ones). Its only size knob,
`h11_max_incomplete_event_size`, answers an oversized head with a bare 400 and closes with the rest
unread, which the client sees as a TCP reset.

This subclass adds, per connection:
- a header timeout: from the connection (or from the first byte of the next request on a kept-alive
  connection) the request line and headers must be complete within `header_timeout` s, else 408 and close;
- a head size limit: request line + headers over `max_header_bytes` is 431.
Both answers are written, the write side is shut (FIN), and what the client still sends is read and
dropped for a moment before closing, so the client reads the status instead of a reset.
- liveness without the event loop's queue: a whole body-less GET/HEAD /healthz arriving on an idle
  connection is answered in the very callback that read it (no ASGI task, which would wait behind every
  other ready callback of a loaded loop), then the connection is closed. Anything else, /healthz on a
  pipelined or kept-alive-with-body request included, takes the ASGI path (service/api/admission.py
  answers /healthz there too, before routing).
- shedding without the event loop's queue: a whole POST to /classify or /qa (head and body in one read)
  arriving while the worker's model pool is full or its body budget spent gets its 503 + Retry-After
  right there; the connection is kept for the next request (closed for HTTP/1.0 or `Connection: close`).

The body timeout is enforced in the ASGI layer (service/api/admission.py), where the response can be JSON.
Configured from the environment (SKIMSERVE_*), like every worker's Settings; `service/cli.py` passes
`http=GuardedH11Protocol` to uvicorn.
"""
from __future__ import annotations

import functools
import json
import re
import time

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools not installed
    HttpToolsProtocol = None

from .. import metrics
from ..config import Settings
from ..pool import pool_slot
from . import admission
from .errors import RETRY_AFTER_S

HEALTH_LINES = (b"GET /healthz HTTP/1.1\r\n", b"HEAD /healthz HTTP/1.1\r\n", b"GET /healthz HTTP/1.0\r\n",
                b"HEAD /healthz HTTP/1.0\r\n")
HEALTH_BODY = b'{"status":"ok"}'
HEALTH_RESPONSE = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
                   % len(HEALTH_BODY) + HEALTH_BODY)
BODY_HEADER = re.compile(rb"\r\n(content-length|transfer-encoding)\s*:", re.IGNORECASE)
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d{1,12})[ \t]*\r\n", re.IGNORECASE)
CLOSE_HEADER = re.compile(rb"\r\nconnection:[^\r\n]*\bclose\b", re.IGNORECASE)
LINGER_S = 1.0  # how long a refused connection keeps draining before it is closed
H11_SLACK = 512 * 1024  # h11's own limit sits above ours (and above one asyncio read), so ours answers first


@functools.lru_cache(maxsize=64)
def _shed_response(code: str, detail: str, keep: bool) -> bytes:
    body = json.dumps({"detail": detail, "code": code}).encode()
    return (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"retry-after: %s\r\n%s\r\n" % (len(body), RETRY_AFTER_S.encode(), b"" if keep else b"connection: close\r\n")
            + body)


@functools.lru_cache(maxsize=8)
def _shed_metric(path: str):
    return metrics.REQUEST_DURATION.labels(endpoint=path if path in admission.MODEL_ROUTES else "unmatched", model="",
                                           status="503")


class _Guards:
    """The guards over either uvicorn protocol; a subclass says where its parser is (`_awaiting_head`,
    `_is_fresh`)."""
    header_timeout: float | None = None
    max_header_bytes: int | None = None

    def __init__(self, config, *args, **kwargs):
        if _Guards.header_timeout is None:
            settings = Settings.from_env()
            _Guards.header_timeout, _Guards.max_header_bytes = settings.header_timeout, settings.max_header_bytes
        config.h11_max_incomplete_event_size = self.max_header_bytes + H11_SLACK
        super().__init__(config, *args, **kwargs)
        self._header_timer = None
        self._head_bytes = 0
        self._refused = False

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # draining a refused connection
        waiting = self._awaiting_head()
        slot = None
        if waiting and self._head_bytes == 0 and self._is_fresh():
            if self._is_health_probe(data):
                return self._answer_health(data)
            if data.startswith(b"POST /"):
                slot = self._shed(data)
                if slot is True:
                    return
        if waiting:
            end = data.find(b"\r\n\r\n")
            if self._head_bytes + (end + 4 if end >= 0 else len(data)) > self.max_header_bytes:
                # refused before the parser sees it (httptools would answer a bare 400 past its own limit)
                return self._refuse(431, "headers_too_large",
                                    f"request line and headers over {self.max_header_bytes} bytes")
            self._head_bytes += len(data)
            if self._header_timer is None:
                self._arm()
        if slot is not None:  # the request's ASGI task, created in there, starts with its pool place
            token = pool_slot.set(slot)
            try:
                super().data_received(data)
            finally:
                pool_slot.reset(token)
        else:
            super().data_received(data)
        if self._awaiting_head():
            if self._head_bytes > self.max_header_bytes and not self.transport.is_closing():
                self._refuse(431, "headers_too_large", f"request line and headers over {self.max_header_bytes} bytes")
        else:
            self._disarm()
            self._head_bytes = 0

    def _is_health_probe(self, data: bytes) -> bool:
        """This chunk is one whole body-less GET/HEAD /healthz."""
        return (data.startswith(HEALTH_LINES) and data.endswith(b"\r\n\r\n") and data.count(b"\r\n\r\n") == 1
                and len(data) <= self.max_header_bytes and not BODY_HEADER.search(data))

    def _shed(self, data: bytes):
        """A whole POST to a model route (head and Content-Length body in this one chunk) while the worker
        has no room for it: 503 written here. Under overload this is most requests, and each one costs no
        ASGI task and never waits behind the loop's queue. The connection stays open for the client's next
        request (HTTP/1.1 without `Connection: close`; else it is closed, everything sent having been
        read, so no reset): closing it made every shed client reconnect, and under a closed loop of
        retries the accepts and new protocols of those reconnections were most of the loop's work.
        Anything less clear-cut goes the ASGI way, where admission.py sheds the same way.

        A model-route POST that has room takes its place in the pool here (WorkPool.reserve) and its
        ASGI task inherits it (admission.py uses it): the decision made in this callback is final, so a
        request is never shed later, after waiting in the loop's queue for its task to start.
        Returns True (answered), the Slot so taken, or None (not this path's to judge)."""
        state = admission.ACTIVE
        end = data.find(b"\r\n\r\n")
        if state is None or end < 0 or end > self.max_header_bytes:
            return None
        line = data[:data.find(b"\r\n")].split(b" ")
        length = CONTENT_LENGTH.search(data, 0, end + 2)
        if len(line) != 3 or length is None or len(data) != end + 4 + int(length.group(1)) \
                or b"transfer-encoding" in data[:end].lower():
            return None
        path = line[1].partition(b"?")[0].decode("latin-1")
        refusal = admission.shed(path, state.pool, state.body_budget, int(length.group(1)))
        if refusal is None:
            if path not in admission.MODEL_ROUTES:
                return None
            slot = state.pool.reserve(bind=False)
            if slot is not None:
                return slot
            refusal = admission.pool_full(state.pool)
        t0 = time.perf_counter()
        self._disarm()
        keep = line[2] == b"HTTP/1.1" and not CLOSE_HEADER.search(data, 0, end + 2)
        self.transport.write(_shed_response(refusal[1], refusal[2], keep))
        if not keep:
            self.transport.close()
        else:  # the parser never saw these bytes: the connection is between requests, as after a response
            self._unset_keepalive_if_required()
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)
        _shed_metric(path).observe(time.perf_counter() - t0)
        return True

    def _answer_health(self, data: bytes) -> None:
        """GET/HEAD /healthz answered here, in the callback that read it: no ASGI task, no wait behind
        the event loop's queue of other requests' work (liveness under load, issue 20). The connection
        is closed after the answer (probes open one per check), so h11's state never has to follow."""
        t0 = time.perf_counter()
        self._disarm()
        head_only = data.startswith(b"HEAD ")
        self.transport.write(HEALTH_RESPONSE if not head_only else HEALTH_RESPONSE[:-len(HEALTH_BODY)])
        self.transport.close()
        metrics.REQUEST_DURATION.labels(endpoint="/healthz", model="", status="200").observe(time.perf_counter() - t0)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._head_bytes = 0  # the next request on this connection starts its own head

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_timeout)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or not self._awaiting_head():
            return
        if self._head_bytes == 0 and self.cycle is not None:
            # idle after a response: uvicorn's keep-alive timer owns that wait
            return
        self._refuse(408, "header_timeout", f"request line and headers not received within {self.header_timeout:g} s")

    def _refuse(self, status: int, code: str, detail: str) -> None:
        self._refused = True
        self._disarm()
        self._unset_keepalive_if_required()
        body = json.dumps({"detail": detail, "code": code}).encode()
        reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                             b"connection: close\r\n\r\n" % (status, reason, len(body)) + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.logger.info("%s:%s - %d %s", *(self.client or ("?", 0)), status, code)
        self.loop.call_later(LINGER_S, self.transport.close)


class GuardedH11Protocol(_Guards, H11Protocol):
    def _awaiting_head(self) -> bool:
        return self.conn.their_state is h11.IDLE

    def _is_fresh(self) -> bool:
        """No request in progress and nothing buffered: the chunk just read starts a request."""
        return (self.cycle is None or self.cycle.response_complete) and self.conn.trailing_data == (b"", False)


if HttpToolsProtocol is not None:
    class GuardedHttpToolsProtocol(_Guards, HttpToolsProtocol):
        """Over uvicorn's httptools (C parser) protocol, which has no head size limit of its own."""

        def connection_made(self, transport) -> None:
            self._head_open = True
            super().connection_made(transport)

        def on_headers_complete(self) -> None:
            self._head_open = False
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            self._head_open = True
            super().on_response_complete()

        def _awaiting_head(self) -> bool:
            return self._head_open

        def _is_fresh(self) -> bool:
            return (self.cycle is None or self.cycle.response_complete) and not self.pipeline
else:  # pragma: no cover  (httptools is a runtime dependency; uvicorn then uses h11)
    GuardedHttpToolsProtocol = None


def guarded_protocol(parser: str = "auto"):
    """The guarded protocol over the parser named ("auto": httptools when installed, as uvicorn picks)."""
    if parser == "h11" or GuardedHttpToolsProtocol is None:
        return GuardedH11Protocol
    return GuardedHttpToolsProtocol

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

import fcntl
import functools
import json
import re
import struct
import termios
import time
import weakref

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools not installed
    HttpToolsProtocol = None

from .. import metrics
from ..config import Settings
from ..pool import pool_slot
from . import admission, fast_path
from .idle_poll import idle_poll
from .body import is_json
from .errors import RETRY_AFTER_S

HEALTH_LINES = (b"GET /healthz HTTP/1.1\r\n", b"HEAD /healthz HTTP/1.1\r\n", b"GET /healthz HTTP/1.0\r\n",
                b"HEAD /healthz HTTP/1.0\r\n")
HEALTH_BODY = b'{"status":"ok"}'
HEALTH_RESPONSE = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
                   % len(HEALTH_BODY) + HEALTH_BODY)
BODY_HEADER = re.compile(rb"\r\n(content-length|transfer-encoding)\s*:", re.IGNORECASE)
TRANSFER_ENCODING = re.compile(rb"transfer-encoding", re.IGNORECASE)
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d{1,12})[ \t]*\r\n", re.IGNORECASE)
CLOSE_HEADER = re.compile(rb"\r\nconnection:[^\r\n]*\bclose\b", re.IGNORECASE)
LINGER_S = 1.0  # how long a refused connection keeps draining before it is closed
H11_SLACK = 512 * 1024  # h11's own limit sits above ours (and above one asyncio read), so ours answers first


STATUS_LINES = {200: b"HTTP/1.1 200 OK\r\n", 500: b"HTTP/1.1 500 Internal Server Error\r\n",
                503: b"HTTP/1.1 503 Service Unavailable\r\n"}
STATUS_TEXT = {status: str(status) for status in STATUS_LINES}
# request line of a POST the protocol answers itself: a model route, a plain query, HTTP/1.1
INLINE_LINE = re.compile(rb"POST (/classify|/qa)(?:\?([!$-~]*))? HTTP/1\.1")  # (no "#": a fragment)
# the header lines of a head the protocol answers itself: names are tokens, values hold no control bytes
# but tab, no obs-fold, no space before the colon (anything uvicorn's parser could refuse is left to it)
HEADER_BLOCK = re.compile(rb"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*\r\n)*")
# the headers that matter to it: the two it needs, and those that change how a request is read or answered
NOTED_HEADER = re.compile(rb"\n(content-length|content-type|connection|transfer-encoding|expect|upgrade|te|trailer):"
                          rb"[ \t]*([\t\x20-\x7e\x80-\xff]*?)[ \t]*\r", re.IGNORECASE)
INLINE_ROUTES = {b"/classify": fast_path.ROUTES["/classify"], b"/qa": fast_path.ROUTES["/qa"]}


def inline_request(data: bytes, end: int, fast):
    """(route, query string, body) of a whole request (head and body in `data`, head ending at `end`) that
    the protocol may answer itself, or None. None unless it is exactly what the ASGI path would take as it
    is: HTTP/1.1, a strict head (HEADER_BLOCK), keep-alive, one Content-Length and one JSON content type, no
    Transfer-Encoding, Expect, Upgrade, TE or Trailer, a body within `inline_max_bytes` (so it runs on the
    event loop there too) and the text limit, and nothing admission.py refuses (URL and header sizes,
    the body budget; the header size bound here is conservative). Repeated query parameters are the fast
    path's Fallback."""
    first = data.find(b"\r\n")
    line = INLINE_LINE.fullmatch(data, 0, first)
    if line is None or HEADER_BLOCK.fullmatch(data, first + 2, end + 2) is None:
        return None
    route = INLINE_ROUTES[line.group(1)]
    query = line.group(2) or b""
    settings = fast.settings
    # admission counts len(name) + len(value) + 4 a header: at most one byte more than its line
    if (len(line.group(1)) + len(query) > settings.max_url_bytes
            or end - first + data.count(b"\r\n", first + 2, end + 2) > settings.max_header_bytes):
        return None
    ctype = length = None
    for name, value in NOTED_HEADER.findall(data, first, end + 2):
        name = name.lower()
        if name == b"content-length":
            if length is not None:
                return None
            length = value
        elif name == b"content-type":
            if ctype is not None:
                return None
            ctype = value
        elif name != b"connection" or value.lower() != b"keep-alive":
            return None
    body = data[end + 4:]
    n = len(body)
    if (length is None or ctype is None or not length.isdigit() or int(length) != n or n > fast.inline_max_bytes
            or n > fast.max_body or n > fast.max_text or not json_type(ctype)):
        return None
    budget = fast.body_budget
    if budget.used + n > budget.limit:  # what admission would reserve (and release right after)
        return None
    return route, query, body


_JSON_TYPES: dict[bytes, bool] = {}


def json_type(ctype: bytes) -> bool:
    """body.is_json of a Content-Type value, remembered for the few values clients send."""
    known = _JSON_TYPES.get(ctype)
    if known is None:
        known = is_json(ctype.decode("latin-1"))
        if len(_JSON_TYPES) < 64:
            _JSON_TYPES[ctype] = known
    return known


OPEN: "weakref.WeakSet[_Guards]" = weakref.WeakSet()  # this worker's connections


def waiting_requests() -> int:
    """Connections of this worker with bytes of a next request unread in their socket while none of their
    requests is being handled: where requests wait under load now that small ones are answered inline (not
    as ASGI tasks counted in flight). Added to `skimserve_inflight_requests` at scrape time
    (metrics.render); called from the scrape's thread, so it reads what it can and skips what it cannot."""
    for _ in range(3):
        try:
            protocols = list(OPEN)
            break
        except RuntimeError:  # the set changed while it was copied (the event loop's thread)
            continue
    else:
        return 0
    n = 0
    for protocol in protocols:
        transport = protocol.transport
        try:
            if transport is None or transport.is_closing() or not protocol._is_fresh():
                continue
            sock = transport.get_extra_info("socket")
            unread = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
        except (OSError, AttributeError, ValueError):
            continue
        n += unread > 0
    return n


metrics.WAITING.append(waiting_requests)

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


_DEFAULT_HEADERS = [None, b""]  # uvicorn's default headers (date, server) as bytes, for the list they came from


def default_headers(server_state) -> bytes:
    """uvicorn's default response headers (date, server), written as uvicorn writes them; uvicorn makes a
    new list each second (the date), so the bytes are rebuilt only then."""
    headers = server_state.default_headers
    if _DEFAULT_HEADERS[0] is not headers:
        _DEFAULT_HEADERS[1] = b"".join(b"%s: %s\r\n" % (name, value) for name, value in headers)
        _DEFAULT_HEADERS[0] = headers
    return _DEFAULT_HEADERS[1]


class _Guards:
    """The guards over either uvicorn protocol; a subclass says where its parser is (`_awaiting_head`,
    `_is_fresh`)."""
    header_timeout: float | None = None
    max_header_bytes: int | None = None
    idle_poll = None  # this worker's IdlePoll (service/api/idle_poll.py)

    def __init__(self, config, *args, **kwargs):
        if _Guards.header_timeout is None:
            settings = Settings.from_env()
            _Guards.header_timeout, _Guards.max_header_bytes = settings.header_timeout, settings.max_header_bytes
            _Guards.idle_poll = idle_poll(settings)
        config.h11_max_incomplete_event_size = self.max_header_bytes + H11_SLACK
        super().__init__(config, *args, **kwargs)
        self._header_timer = None
        self._head_bytes = 0
        self._refused = False
        self._idle_timer, self._idle_from = None, 0.0  # the keep-alive timer of inline answers (_idle_check)

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        OPEN.add(self)
        self._arm()

    def connection_lost(self, exc) -> None:
        OPEN.discard(self)
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
                slot = self._post(data)
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

    def _post(self, data: bytes):
        """A whole POST (head and Content-Length body in this one chunk), judged in this callback: shed (503)
        while the worker has no room for it, else answered here when the fast path takes it, else, for a
        model route, given its place in the pool here (WorkPool.reserve), which its ASGI task inherits
        (admission.py uses it): the decision made here is final, so a request is never shed later, after
        waiting in the loop's queue for its task to start. Returns True (answered), the Slot so taken, or
        None (not this path's to judge: uvicorn's parser and the ASGI path take it)."""
        t0 = time.perf_counter()
        end = data.find(b"\r\n\r\n")
        if end < 0 or end > self.max_header_bytes:
            return None
        length = CONTENT_LENGTH.search(data, 0, end + 2)
        if length is None or len(data) != end + 4 + int(length.group(1)):
            return None
        n = int(length.group(1))
        if self._shed(data, end, n) or self._answer_inline(data, end, t0):
            return True
        return self._reserve(data, end)

    def _request_line(self, data: bytes, end: int):
        """(path, HTTP version) of a plain request line without Transfer-Encoding, else None."""
        line = data[:data.find(b"\r\n")].split(b" ")
        if len(line) != 3 or TRANSFER_ENCODING.search(data, 0, end) is not None:
            return None
        return line[1].partition(b"?")[0].decode("latin-1"), line[2]

    def _shed(self, data: bytes, end: int, length: int) -> bool:
        """A whole POST to a model route while the worker has no room for it: 503 written here. Under
        overload this is most requests, and each one costs no ASGI task and never waits behind the loop's
        queue. Anything less clear-cut goes the ASGI way, where admission.py sheds the same way."""
        state = admission.ACTIVE
        if state is None:
            return False
        pool = state.pool
        if pool.admitted < pool.threads + pool.max_queue and length <= state.body_budget.limit:
            return False  # room for it (admission.shed's test, before any parsing)
        line = self._request_line(data, end)
        if line is None:
            return False
        refusal = admission.shed(line[0], state.pool, state.body_budget, length)
        if refusal is None:
            return False
        return self._write_503(data, end, line, refusal)

    def _reserve(self, data: bytes, end: int):
        """The pool place of a model-route POST the fast path did not answer: the Slot, or True when the
        pool filled up meanwhile (503 written), or None (not a model route, no admission state)."""
        state = admission.ACTIVE
        line = self._request_line(data, end) if state is not None else None
        if line is None or line[0] not in admission.MODEL_ROUTES:
            return None
        slot = state.pool.reserve(bind=False)
        if slot is not None:
            return slot
        return self._write_503(data, end, line, admission.pool_full(state.pool))

    def _write_503(self, data: bytes, end: int, line, refusal) -> bool:
        """The shed answer. The connection stays open for the client's next request (HTTP/1.1 without
        `Connection: close`; else it is closed, everything sent having been read, so no reset): closing it
        made every shed client reconnect, and under a closed loop of retries the accepts and new protocols
        of those reconnections were most of the loop's work."""
        t0 = time.perf_counter()
        self._disarm()
        keep = line[1] == b"HTTP/1.1" and not CLOSE_HEADER.search(data, 0, end + 2)
        self.transport.write(_shed_response(refusal[1], refusal[2], keep))
        if not keep:
            self.transport.close()
        else:  # the parser never saw these bytes: the connection is between requests, as after a response
            self._unset_keepalive_if_required()
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)
        _shed_metric(line[0]).observe(time.perf_counter() - t0)
        return True

    def _answer_inline(self, data: bytes, end: int, t0: float) -> bool:
        """A whole, plain POST /classify or /qa with a small JSON body, answered in this callback by the
        fast path (service/api/fast_path.py): no request cycle, ASGI task, middleware or second write.
        Taken only when every check the ASGI path would make is passed as it is (inline_request); on
        anything else, or on the fast path's Fallback, the request goes on to uvicorn's parser untouched."""
        fast = fast_path.ACTIVE
        if (fast is None or not fast.enabled or self.flow.write_paused or self.transport.is_closing()
                or self.limit_concurrency is not None):
            return False
        taken = inline_request(data, end, fast)
        if taken is None:
            return False
        route, query, body = taken
        try:
            status, payload, extra, model = fast.answer_now(route, query, body)
        except fast_path.Fallback:
            return False
        except Exception:  # noqa: BLE001 - a bug before the model ran: the ASGI path answers (its 500, logged)
            return False
        self._disarm()
        self.transport.write(b"".join((STATUS_LINES[status], default_headers(self.server_state),
                                       b"content-length: %d\r\ncontent-type: application/json\r\n" % len(payload),
                                       *(b"%s: %s\r\n" % kv for kv in extra), b"\r\n", payload)))
        if self.access_log:
            self.access_logger.info('%s - "%s %s HTTP/%s" %d', "%s:%d" % self.client if self.client else "-",
                                    "POST", data[5:data.find(b" ", 5)].decode("latin-1"), "1.1", status)
        # what uvicorn does when a response is complete: count it, wait for the next one on keep-alive
        self.server_state.total_requests += 1
        self._idle_from = self.loop.time()
        if self.timeout_keep_alive_task is None or self.timeout_keep_alive_task is not self._idle_timer:
            self._unset_keepalive_if_required()  # uvicorn's timer (after a request it answered)
            self.timeout_keep_alive_task = self._idle_timer = self.loop.call_later(self.timeout_keep_alive,
                                                                                   self._idle_check)
        self._head_bytes = 0
        metrics.observe_request(route.path, model, STATUS_TEXT[status], time.perf_counter() - t0)
        self.idle_poll.answered(self.loop)  # the client's next request, if it comes at once, finds the loop awake
        return True

    def _idle_check(self) -> None:
        """uvicorn's keep-alive timeout for requests answered inline, with one timer per idle stretch instead
        of one per request: when it fires it closes the connection if it has been idle for
        `timeout_keep_alive` s since the last inline answer, else it waits for the rest. uvicorn cancels it
        (`_unset_keepalive_if_required`) as soon as any request takes its own way, as it does its own timer."""
        left = self._idle_from + self.timeout_keep_alive - self.loop.time()
        if left > 0:
            self.timeout_keep_alive_task = self._idle_timer = self.loop.call_later(left, self._idle_check)
        else:
            self.timeout_keep_alive_task = self._idle_timer = None
            self.timeout_keep_alive_handler()

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
        self.idle_poll.answered(self.loop)

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

"""Admission: the checks a request passes before any of its body is read (raw ASGI, so nothing here waits
behind JSON parsing or model work), and the guarded `receive` the body is then read through.

Before the body (each answered at once, without reading it):
- `GET`/`HEAD /healthz` is answered here, so liveness never queues behind routing, validation or bodies;
- URL over `max_url_bytes` 414, headers over `max_header_bytes` 431 (the uvicorn protocol in
  service/api/protocol.py enforces the same bound on the raw bytes; this covers other servers);
- a query parameter given twice 422 (`repeated_parameter`; the framework would keep the last silently);
- a declared Content-Length over `max_body_bytes` 413;
- a model route while this worker's model pool is full, or a POST while the in-flight body budget
  (`max_inflight_body_bytes`) cannot take its body: 503 + Retry-After (load is shed before it costs
  anything). A declared body (Content-Length) is charged to the budget in full before any of it is read
  (a reservation); one that does not fit what is left waits up to ADMIT_WAIT_S for other bodies to be
  released, then is refused. A chunked body is refused at once while the budget is spent.
- a /classify or /qa request that passes (once its declared body has room) takes its place in the model
  pool here (`WorkPool.reserve`; the protocol takes it already for a POST that arrived whole), used by
  its model job and held until the request ends: every 503 for a full pool is decided from the
  head, and a request whose body was read and parsed is never refused for load after that work (under
  overload about half the shed requests used to get their 503 only at the pool, after body, parse and
  the event loop's queue, several times later than those shed from the head). A client that declares a body and does
  not send it holds its place until `body_timeout`, as it holds its body reservation.

Why reservations: when 64 bodies at the body limit arrived at once, each was read in part and 56 were
refused mid-body once the budget ran out, so every one of them was slowed by all the others' bytes (issue
20: 2.3 s to the last status). Now the budget's worth is read and the rest wait unread; the wait lets a
burst of bodies that are refused early (a string over the text limit, 413 after about 100 KB; a batch
over the batch limit, 413 as its first item past the limit begins) all get their 413 rather than 503.
The wait is 2 s (0.5 s before): 64 batches of maximal texts at the body limit, each refused after about
6.4 MB, took up to 1.3 s for the last one on the 2-core development machine (benchmarks/results/soak*.md);
with 0.5 s most of them were shed with 503 instead of their 413. A client that declares a body and then does not send it holds its reservation
until `body_timeout` (408), as one that sent it slowly held what it had sent.

While the body is read (`receive` wrapped): bytes beyond the reservation (a chunked body, or one longer
than declared) are charged to the budget as they arrive (released when the request ends; over it: 503),
and the whole body must arrive within `body_timeout` (else 408). A client that goes away mid-body surfaces
as starlette's ClientDisconnect, answered as 499 (service/api/errors.py).
"""
from __future__ import annotations

import asyncio
import ctypes
import json
import time

from .errors import RETRY_AFTER_S, ApiError, error_response
from .inputs import repeated_parameter

MODEL_ROUTES = ("/classify", "/qa")
HEALTH = b'{"status":"ok"}'


ADMIT_WAIT_S = 2.0  # how long a declared body may wait for room in the body budget before its 503
TRIM_BODY_BYTES = 1_000_000  # a body at least this big schedules a heap trim when it is released
TRIM_DELAY_S = 0.2  # bodies released within this of each other share one trim


def _malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None


class HeapTrimmer:
    """glibc keeps the heap a big body was parsed in (its copies, the decoded text, the parsed strings)
    after it is freed, so after a burst of bodies at the limit the worker stayed over 30% above its idle
    size (issue 20). After such a body is released, malloc_trim(0) hands free heap pages back to the OS:
    once per TRIM_DELAY_S at most, on a worker thread (it takes each arena's lock, a few ms), never for
    small bodies."""

    def __init__(self):
        self.trim, self.pending = _malloc_trim(), False

    def after(self, body_bytes: int) -> None:
        if self.trim is None or body_bytes < TRIM_BODY_BYTES or self.pending:
            return
        self.pending = True
        asyncio.get_running_loop().call_later(TRIM_DELAY_S, self._run)

    def _run(self) -> None:
        self.pending = False
        asyncio.get_running_loop().run_in_executor(None, self.trim, 0)


class BodyBudget:
    """Bytes of request bodies buffered at once in this worker (one event loop: no lock needed)."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0
        self._waiters: list[asyncio.Future] = []  # reservations waiting for room, all woken by a release

    def charge(self, n: int) -> bool:
        if self.used + n > self.limit:
            return False
        self.used += n
        return True

    async def reserve(self, n: int, wait_s: float) -> bool:
        """charge(n), waiting up to wait_s for other bodies to be released; False if it never fit."""
        deadline = time.monotonic() + wait_s
        while not self.charge(n):
            left = deadline - time.monotonic()
            if n > self.limit or left <= 0:
                return False
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, left)
            except asyncio.TimeoutError:
                return False
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        return True

    def release(self, n: int) -> None:
        self.used -= n
        if n and self._waiters:
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._waiters.clear()


async def send_json(send, status: int, body: dict | bytes, headers: list[tuple[bytes, bytes]] = (),
                    head_only: bool = False) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": b"" if head_only else data})


def _error(status: int, code: str, detail: str) -> dict:
    return {"detail": detail, "code": code}


class GuardedReceive:
    """An ASGI `receive` that charges every body chunk beyond the `reserved` bytes (charged at admission)
    to the worker's in-flight budget (503 over it) and wants the whole body within `body_timeout` s (408);
    `release()` when the request ends."""

    def __init__(self, receive, budget: BodyBudget, body_timeout: float, reserved: int = 0):
        self.receive, self.budget, self.body_timeout = receive, budget, body_timeout
        self.deadline = time.monotonic() + body_timeout
        self.charged = self.reserved = reserved
        self.received = 0

    async def __call__(self):
        try:
            message = await asyncio.wait_for(self.receive(), max(self.deadline - time.monotonic(), 0.001))
        except asyncio.TimeoutError:
            raise ApiError(408, "body_timeout", f"the body did not arrive within {self.body_timeout:g} s",
                           {"Connection": "close"}) from None
        n = len(message.get("body", b""))
        self.received += n
        n = min(n, self.received - self.reserved)  # what the reservation does not cover
        if n > 0:
            if not self.budget.charge(n):
                raise ApiError(503, "overloaded", "server busy reading other request bodies; retry later",
                               {"Retry-After": RETRY_AFTER_S, "Connection": "close"})
            self.charged += n
        return message

    def release(self) -> None:
        self.budget.release(self.charged)
        self.charged = 0


def declared_length(scope) -> int | None:
    value = next((v for k, v in scope["headers"] if k == b"content-length"), None)
    return int(value) if value is not None and value.isdigit() else None


def early_refusal(scope, settings, pool, budget: BodyBudget):
    """(status, code, detail, headers) for a request refused before its body is read, or None."""
    url_bytes = len(scope.get("raw_path") or scope["path"].encode()) + len(scope.get("query_string", b""))
    if url_bytes > settings.max_url_bytes:
        return 414, "uri_too_long", f"URL of {url_bytes} bytes; the limit is {settings.max_url_bytes}", []
    head = sum(len(k) + len(v) + 4 for k, v in scope["headers"])
    if head > settings.max_header_bytes:
        return 431, "headers_too_large", f"headers of {head} bytes; the limit is {settings.max_header_bytes}", []
    repeated = repeated_parameter(scope.get("query_string", b""))
    if repeated is not None:
        return 422, "repeated_parameter", f"query parameter '{repeated}' given more than once", []
    if scope["method"] != "POST":
        return None
    declared = declared_length(scope)
    if declared is not None and declared > settings.max_body_bytes:
        return 413, "body_too_large", f"body of {declared} bytes; the limit is {settings.max_body_bytes}", \
            [(b"connection", b"close")]
    return shed(scope["path"], pool, budget, declared)


RETRY = [(b"retry-after", RETRY_AFTER_S.encode())]


def shed(path: str, pool, budget: BodyBudget, declared: int | None = None):
    """503 (status, code, detail, headers) for a POST this worker has no room for now, or None: its model
    pool is full, or the body budget is spent (a chunked body) or smaller than the `declared` body. A
    declared body that fits the budget but not what is left of it waits (AdmissionMiddleware)."""
    if path in MODEL_ROUTES and pool.full:  # (not full for a request holding its place already)
        return pool_full(pool)
    if (budget.used >= budget.limit) if declared is None else declared > budget.limit:
        return 503, "overloaded", "server busy reading other request bodies; retry later", RETRY
    return None


def pool_full(pool):
    return 503, "overloaded", (f"server busy: its model pool is full ({pool.threads} running + {pool.max_queue} "
                               "waiting); retry later"), RETRY


# The app state of this worker's server, for the shedding that service/api/protocol.py does before a
# request reaches ASGI (one app per worker process; the last app built wins, which only tests notice).
ACTIVE = None


class AdmissionMiddleware:
    """Outermost but for metrics: every route behind it (a raw-ASGI route too) gets these checks."""

    def __init__(self, app, state):
        global ACTIVE
        self.app, self.state = app, state  # app.state: settings, pool, body_budget
        self.trimmer = HeapTrimmer()
        ACTIVE = state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope["path"], scope["method"]
        if path == "/healthz" and method in ("GET", "HEAD"):
            scope.setdefault("skimserve", {})["endpoint"] = "/healthz"
            return await send_json(send, 200, HEALTH, head_only=method == "HEAD")
        state = self.state
        inherited = state.pool.held_slot()  # the protocol took this request's place in the pool already
        refusal = early_refusal(scope, state.settings, state.pool, state.body_budget)
        if refusal is not None:
            if inherited is not None:
                inherited.release()
            status, code, detail, headers = refusal
            if path in MODEL_ROUTES:  # the metric's endpoint label: the route, not "unmatched"
                scope.setdefault("skimserve", {})["endpoint"] = path
            return await send_json(send, status, _error(status, code, detail), headers)
        if method != "POST":
            return await self.app(scope, receive, send)
        slot = inherited
        reserved = declared_length(scope) or 0
        if not await state.body_budget.reserve(reserved, ADMIT_WAIT_S):
            if slot is not None:
                slot.release()
            if path in MODEL_ROUTES:
                scope.setdefault("skimserve", {})["endpoint"] = path
            return await send_json(send, 503, _error(503, "overloaded", "server busy reading other request "
                                                     "bodies; retry later"), RETRY)
        if path in MODEL_ROUTES and slot is None:
            # its place in the model pool, held from here (taken once its body has room, so that bodies
            # waiting for the budget do not hold the pool's places meanwhile); none left: shed, still unread
            slot = state.pool.reserve()
            if slot is None:
                state.body_budget.release(reserved)
                scope.setdefault("skimserve", {})["endpoint"] = path
                status, code, detail, headers = pool_full(state.pool)
                return await send_json(send, status, _error(status, code, detail), headers)
        guarded = GuardedReceive(receive, state.body_budget, state.settings.body_timeout, reserved)
        started = False

        async def send_noting(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, guarded, send_noting)
        except ApiError as exc:  # raised by a body read outside FastAPI's handlers (the fast path's)
            if started:
                raise
            await error_response(exc.status, exc.code, exc.message, headers=exc.headers)(scope, receive, send)
        finally:
            if slot is not None:
                slot.release()  # no-op once its job took it (the job gives it back when it ends)
            guarded.release()
            self.trimmer.after(guarded.received)

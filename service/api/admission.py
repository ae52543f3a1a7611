"""Admission: the checks a request passes before any of its body is read (raw ASGI, so nothing here waits
behind JSON parsing or model work), and the guarded `receive` the body is then read through.

Before the body (each answered at once, without reading it):
- `GET`/`HEAD /healthz` is answered here, so liveness never queues behind routing, validation or bodies;
- URL over `max_url_bytes` 414, headers over `max_header_bytes` 431 (the uvicorn protocol in
  service/api/protocol.py enforces the same bound on the raw bytes; this covers other servers);
- a query parameter given twice 422 (`repeated_parameter`; the framework would keep the last silently);
- a declared Content-Length over `max_body_bytes` 413;
- a model route while this worker's model pool is full, or while the in-flight body budget
  (`max_inflight_body_bytes`) is spent: 503 + Retry-After (load is shed before it costs anything).

While the body is read (`receive` wrapped): every chunk is charged to the worker's in-flight body budget
(released when the request ends; over it: 503), and the whole body must arrive within `body_timeout`
(else 408). A client that goes away mid-body surfaces as starlette's ClientDisconnect, answered as 499
(service/api/errors.py).
"""
from __future__ import annotations

import asyncio
import json
import time
from .errors import RETRY_AFTER_S, ApiError, error_response
from .inputs import repeated_parameter

MODEL_ROUTES = ("/classify", "/qa")
HEALTH = b'{"status":"ok"}'


class BodyBudget:
    """Bytes of request bodies buffered at once in this worker (one event loop: no lock needed)."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0

    def charge(self, n: int) -> bool:
        if self.used + n > self.limit:
            return False
        self.used += n
        return True

    def release(self, n: int) -> None:
        self.used -= n


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
    """An ASGI `receive` that charges every body chunk to the worker's in-flight budget (503 over it) and
    wants the whole body within `body_timeout` s (408); `release()` when the request ends."""

    def __init__(self, receive, budget: BodyBudget, body_timeout: float):
        self.receive, self.budget, self.body_timeout = receive, budget, body_timeout
        self.deadline = time.monotonic() + body_timeout
        self.charged = 0

    async def __call__(self):
        try:
            message = await asyncio.wait_for(self.receive(), max(self.deadline - time.monotonic(), 0.001))
        except asyncio.TimeoutError:
            raise ApiError(408, "body_timeout", f"the body did not arrive within {self.body_timeout:g} s",
                           {"Connection": "close"}) from None
        n = len(message.get("body", b""))
        if n:
            if not self.budget.charge(n):
                raise ApiError(503, "overloaded", "server busy reading other request bodies; retry later",
                               {"Retry-After": RETRY_AFTER_S, "Connection": "close"})
            self.charged += n
        return message

    def release(self) -> None:
        self.budget.release(self.charged)
        self.charged = 0


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
    declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
    if declared is not None and declared.isdigit() and int(declared) > settings.max_body_bytes:
        return 413, "body_too_large", f"body of {int(declared)} bytes; the limit is {settings.max_body_bytes}", \
            [(b"connection", b"close")]
    return shed(scope["path"], pool, budget)


RETRY = [(b"retry-after", RETRY_AFTER_S.encode())]


def shed(path: str, pool, budget: BodyBudget):
    """503 (status, code, detail, headers) for a POST this worker has no room for now, or None."""
    if path in MODEL_ROUTES and pool.admitted >= pool.threads + pool.max_queue:
        return 503, "overloaded", (f"server busy: {pool.admitted} model jobs in flight (limit {pool.threads} "
                                   f"running + {pool.max_queue} waiting); retry later"), RETRY
    if budget.used >= budget.limit:
        return 503, "overloaded", "server busy reading other request bodies; retry later", RETRY
    return None


# The app state of this worker's server, for the shedding that service/api/protocol.py does before a
# request reaches ASGI (one app per worker process; the last app built wins, which only tests notice).
ACTIVE = None


class AdmissionMiddleware:
    """Outermost but for metrics: every route behind it (a raw-ASGI route too) gets these checks."""

    def __init__(self, app, state):
        global ACTIVE
        self.app, self.state = app, state  # app.state: settings, pool, body_budget
        ACTIVE = state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope["path"], scope["method"]
        if path == "/healthz" and method in ("GET", "HEAD"):
            scope.setdefault("skimserve", {})["endpoint"] = "/healthz"
            return await send_json(send, 200, HEALTH, head_only=method == "HEAD")
        state = self.state
        refusal = early_refusal(scope, state.settings, state.pool, state.body_budget)
        if refusal is not None:
            status, code, detail, headers = refusal
            if path in MODEL_ROUTES:  # the metric's endpoint label: the route, not "unmatched"
                scope.setdefault("skimserve", {})["endpoint"] = path
            return await send_json(send, status, _error(status, code, detail), headers)
        if method != "POST":
            return await self.app(scope, receive, send)
        guarded = GuardedReceive(receive, state.body_budget, state.settings.body_timeout)
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
            guarded.release()

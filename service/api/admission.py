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
from urllib.parse import parse_qsl

from .errors import RETRY_AFTER_S, ApiError

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


class AdmissionMiddleware:
    def __init__(self, app, state):
        self.app, self.state = app, state  # app.state: settings, pool, body_budget

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope["path"], scope["method"]
        if path == "/healthz" and method in ("GET", "HEAD"):
            scope.setdefault("skimserve", {})["endpoint"] = "/healthz"
            return await send_json(send, 200, HEALTH, head_only=method == "HEAD")
        settings = self.state.settings
        refusal = self._refusal(scope, settings)
        if refusal is not None:
            status, code, detail, headers = refusal
            return await send_json(send, status, _error(status, code, detail), headers)
        if method != "POST":
            return await self.app(scope, receive, send)
        budget: BodyBudget = self.state.body_budget
        charged = 0
        deadline = time.monotonic() + settings.body_timeout

        async def guarded_receive():
            nonlocal charged
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.001))
            except asyncio.TimeoutError:
                raise ApiError(408, "body_timeout", f"the body did not arrive within {settings.body_timeout:g} s",
                               {"Connection": "close"}) from None
            n = len(message.get("body", b""))
            if n:
                if not budget.charge(n):
                    raise ApiError(503, "overloaded", "server busy reading other request bodies; retry later",
                                   {"Retry-After": RETRY_AFTER_S, "Connection": "close"})
                charged += n
            return message

        try:
            await self.app(scope, guarded_receive, send)
        finally:
            budget.release(charged)

    def _refusal(self, scope, settings):
        url_bytes = len(scope.get("raw_path") or scope["path"].encode()) + len(scope.get("query_string", b""))
        if url_bytes > settings.max_url_bytes:
            return 414, "uri_too_long", f"URL of {url_bytes} bytes; the limit is {settings.max_url_bytes}", []
        head = sum(len(k) + len(v) + 4 for k, v in scope["headers"])
        if head > settings.max_header_bytes:
            return 431, "headers_too_large", f"headers of {head} bytes; the limit is {settings.max_header_bytes}", []
        query = scope.get("query_string", b"").decode("latin-1")
        seen = set()
        for key, _ in parse_qsl(query, keep_blank_values=True):
            if key in seen:
                return 422, "repeated_parameter", f"query parameter '{key}' given more than once", []
            seen.add(key)
        if scope["method"] != "POST":
            return None
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > settings.max_body_bytes:
            return 413, "body_too_large", f"body of {int(declared)} bytes; the limit is {settings.max_body_bytes}", \
                [(b"connection", b"close")]
        retry = [(b"retry-after", RETRY_AFTER_S.encode())]
        if scope["path"] in MODEL_ROUTES:
            pool = self.state.pool
            if pool.admitted >= pool.threads + pool.max_queue:
                return 503, "overloaded", (f"server busy: {pool.admitted} model jobs in flight (limit {pool.threads} "
                                           f"running + {pool.max_queue} waiting); retry later"), retry
        budget: BodyBudget = self.state.body_budget
        if budget.used >= budget.limit:
            return 503, "overloaded", "server busy reading other request bodies; retry later", retry
        return None

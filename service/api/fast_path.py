"""POST /classify and /qa as plain ASGI, in front of the FastAPI routes: the same answer at a fraction of
the cost (docs/request-path.md has the profile that motivated it).

Per request FastAPI solves the route's dependencies, validates the returned dict against the response
model (a union, so twice), runs jsonable_encoder and json.dumps, and hops to a thread pool: about 1 ms on
the development machine, more than the model itself on a short sentence. This layer answers the common,
valid request with the functions the routes call (the body parser, the request schema's `model_validate`, the
Dataplane's `entry`/`params`/`_items`, the task's `run` and `envelope`), serialises with orjson, and runs
small requests on the event loop (a thread hop costs more than their model time).

Anything it does not take as it is - a header, query parameter or body it does not accept verbatim, any
client error at all - goes on to the FastAPI route with the body replayed, so each 4xx keeps exactly one
implementation and the fast path can only ever answer 200 (or 503 when the pool is full, 500 on a bug,
both in the routes' error format). tests/test_fast_path.py proves the two paths give the same responses.
"""
from __future__ import annotations

import logging
import re
import time
from urllib.parse import parse_qsl

import orjson
from pydantic import ValidationError

from ..dataplane import InputError
from ..pool import QueueFull
from ..registry import UnknownModel
from .body import BATCH_KEYS, collect_body, decode_json, is_json, parse_body
from .errors import CLIENT_CLOSED, RETRY_AFTER_S
from .inputs import parse_thresholds
from .schemas import ClassifyRequest, QARequest

log = logging.getLogger(__name__)

# A threshold written so plainly that every parser reads the same number from it ("0.3", "1", ".25").
PLAIN_NUMBER = re.compile(r"(?:0|1)?(?:\.[0-9]{1,30})?")
FLAGS = {"true": True, "false": False}


class Route:
    """What the fast path needs of one model route; `path` also names it to the request metrics."""

    def __init__(self, path: str, task: str, schema, query: frozenset[str]):
        self.path, self.task, self.schema, self.query = path, task, schema, query


ROUTES = {r.path: r for r in (
    Route("/classify", "classify", ClassifyRequest, frozenset({"threshold", "model", "explain", "budget"})),
    Route("/qa", "qa", QARequest, frozenset({"threshold", "thresholds", "model", "explain", "budget"})),
)}


class Fallback(Exception):
    """Not for the fast path: the FastAPI route answers (with its own, canonical, error if it is one)."""


class Disconnected(Exception):
    """The client went away before its body was in."""


def query_params(raw: bytes, allowed: frozenset[str]) -> dict[str, str]:
    """The query string as Starlette reads it; anything unusual (unknown, repeated or empty) -> Fallback."""
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True) if raw else []
    params = dict(pairs)
    if len(params) != len(pairs) or any(k not in allowed or not v for k, v in pairs):
        raise Fallback
    return params


def plain_share(raw: str) -> float:
    """A number in [0, 1] written plainly (PLAIN_NUMBER), or Fallback: the route judges anything else."""
    if not PLAIN_NUMBER.fullmatch(raw) or raw == "." or float(raw) > 1.0:
        raise Fallback
    return float(raw)


def threshold_of(params: dict[str, str]):
    """None (the model's default), one float, or a list of per-layer floats (`thresholds`, /qa only).
    `threshold` is checked even when `thresholds` overrides it, as the route does."""
    raw, single = params.get("threshold"), None
    if raw is not None:
        single = plain_share(raw)
    if "thresholds" in params:
        try:
            return parse_thresholds(params["thresholds"])
        except InputError:
            raise Fallback from None
    return single


def budget_of(params: dict[str, str]) -> float | None:
    """None (no budget) or a plainly written number in (0, 1]; anything else is the route's to refuse."""
    raw = params.get("budget")
    if raw is None:
        return None
    value = plain_share(raw)
    if value == 0.0:
        raise Fallback
    return value


def flag_of(params: dict[str, str], name: str) -> bool:
    raw = params.get(name)
    if raw is None:
        return False
    if raw not in FLAGS:
        raise Fallback
    return FLAGS[raw]


QUERY_CACHE_SIZE = 256
_QUERIES: dict[tuple[str, bytes], tuple | None] = {}


def parsed_query(route: Route, raw: bytes) -> tuple:
    """(model, threshold, explain, budget) of a query string, or Fallback; remembered for the last few
    hundred query strings (clients send the same few again and again). Read only by the callers."""
    key = (route.path, raw)
    parsed = _QUERIES.get(key, _QUERIES)
    if parsed is _QUERIES:
        try:
            params = query_params(raw, route.query)
            parsed = (params.get("model"), threshold_of(params), flag_of(params, "explain"), budget_of(params))
        except Fallback:
            parsed = None
        if len(_QUERIES) >= QUERY_CACHE_SIZE:
            _QUERIES.clear()
        _QUERIES[key] = parsed
    if parsed is None:
        raise Fallback
    return parsed


def json_response_start(status: int, body: bytes, extra: list[tuple[bytes, bytes]] = ()) -> dict:
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json"), *extra]
    return {"type": "http.response.start", "status": status, "headers": headers}


def error_body(code: str, detail: str) -> bytes:
    return orjson.dumps({"detail": detail, "code": code})


# This worker's fast path, for service/api/protocol.py, which answers whole small requests with it before
# they reach ASGI (one app per worker process; the last one built wins, as admission.ACTIVE).
ACTIVE = None


class FastPath:
    """ASGI middleware; `state` is the FastAPI app's state (settings, dataplane)."""

    def __init__(self, app, state):
        global ACTIVE
        self.app, self.state = app, state
        # set once by create_app (the pool is the dataplane's: the lifespan may replace it); a State
        # attribute costs a Python-level lookup each use
        self.dataplane, self.settings, self.body_budget = state.dataplane, state.settings, state.body_budget
        ACTIVE = self
        settings = state.settings
        self.enabled, self.inline_max_bytes, self.max_body = (settings.fast_path, settings.inline_max_bytes,
                                                              settings.max_body_bytes)
        if settings.gpu_batch_size > 1:  # inline runs one request at a time: the batcher would never see two
            self.inline_max_bytes = -1
        self.max_text, self.max_batch = settings.max_text_bytes, settings.max_batch

    async def __call__(self, scope, receive, send):
        route = ROUTES.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None or not self.enabled or not self._headers_ok(scope):
            return await self.app(scope, receive, send)
        try:  # the routes' streaming limits (body, text, batch): an ApiError here is answered by admission.py
            body = bytes(await collect_body(self._chunks(receive), self.max_body, self.max_text,
                                            (BATCH_KEYS[route.path], self.max_batch)))
        except Disconnected:  # nobody to answer; the status reaches the request metrics only (499)
            scope.setdefault("skimserve", {})["endpoint"] = route.path
            return await send({"type": "http.response.start", "status": CLIENT_CLOSED, "headers": []})
        try:
            status, payload, extra = await self._answer(scope, route, body)
        except Fallback:
            return await self.app(scope, replay(body, receive), send)
        await send(json_response_start(status, payload, extra))
        await send({"type": "http.response.body", "body": payload})

    def _headers_ok(self, scope) -> bool:
        """A JSON body of declared length within the limit; anything else is the route's to judge."""
        ctype = length = None
        for key, value in scope["headers"]:
            if key == b"content-type":
                ctype = value
            elif key == b"content-length":
                length = value
            elif key == b"transfer-encoding":
                return False
        return (ctype is not None and length is not None and length.isdigit() and int(length) <= self.max_body
                and is_json(ctype.decode("latin-1")))

    @staticmethod
    async def _chunks(receive):
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Disconnected
            yield message.get("body", b"")
            if not message.get("more_body", False):
                return

    async def _answer(self, scope, route: Route, body: bytes) -> tuple[int, bytes, list]:
        try:  # the routes' own parser (same numbers, duplicate keys, BOM); orjson only writes
            document = await parse_body(body)  # off the event loop when big
        except InputError:
            raise Fallback from None
        entry, run_params, task, items, request = self._request(route, scope["query_string"], document)
        info = scope.setdefault("skimserve", {})
        info["model"], info["endpoint"] = entry.name, route.path  # request-metric labels (app.py)
        scope["route"] = route
        if len(body) <= self.inline_max_bytes:
            return self._run_here(route, entry, run_params, task, items, request)
        dp = self.dataplane
        t0 = time.perf_counter()
        try:
            results = await dp.pool.run(task.run, entry.model, items, run_params, dp.limits)
        except Exception as exc:  # noqa: BLE001 - mapped as the inline run maps it
            return self._failed(route, exc)
        return self._done(entry, run_params, task, request, results, t0)

    def answer_now(self, route: Route, query_string: bytes, body: bytes) -> tuple[int, bytes, list, str]:
        """The whole answer on the calling thread (the event loop) for a body of at most `inline_max_bytes`,
        for service/api/protocol.py, which answers such a request in the callback that read it:
        (status, body, extra headers, model name), or Fallback (the ASGI app then takes the request).

        The body is read by orjson when it can: where orjson reads a document, the routes' parser reads the
        same strings, lists and objects (duplicate keys: the last; escapes alike) and differs only in
        numbers (huge integers, 1e400), and every field of the request schemas is a strict string, so a
        document with a number is refused by validation either way (Fallback). What orjson refuses (a BOM,
        lone surrogates, NaN, deep nesting, bad UTF-8) goes to the routes' parser."""
        try:  # orjson where it reads the body at all, else the routes' parser (see above)
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            try:
                document = decode_json(body)
            except InputError:
                raise Fallback from None
        entry, run_params, task, items, request = self._request(route, query_string, document)
        return (*self._run_here(route, entry, run_params, task, items, request), entry.name)

    def _request(self, route: Route, query_string: bytes, document):
        """What a parsed request asks for (entry, params, task, items, request), or Fallback."""
        model, threshold, explain, budget = parsed_query(route, query_string)
        if type(document) is not dict:
            raise Fallback
        try:
            request = route.schema.model_validate(document)
        except ValidationError:
            raise Fallback from None
        dp = self.dataplane
        try:
            entry = dp.entry(route.task, model)
            run_params = dp.params(entry, threshold, explain, budget)
            task, items = dp._items(entry, request)
        except (InputError, UnknownModel):
            raise Fallback from None
        return entry, run_params, task, items, request

    def _run_here(self, route: Route, entry, run_params, task, items, request) -> tuple[int, bytes, list]:
        dp = self.dataplane
        t0 = time.perf_counter()
        try:
            if dp.pool.full:  # overloaded: small requests are refused like the pool's, not slipped in
                raise QueueFull(f"{dp.pool.admitted} model jobs in flight")
            results = task.run(entry.model, items, run_params, dp.limits)
        except Exception as exc:  # noqa: BLE001
            return self._failed(route, exc)
        return self._done(entry, run_params, task, request, results, t0)

    @staticmethod
    def _failed(route: Route, exc: Exception) -> tuple[int, bytes, list]:
        if isinstance(exc, InputError):
            raise Fallback from None  # found while tokenizing (too many tokens, none): the route says so
        if isinstance(exc, QueueFull):
            return 503, error_body("overloaded", f"server busy: {exc}; retry later"), RETRY
        log.error("unhandled error on POST %s", route.path, exc_info=exc)
        return 500, error_body("internal_error", "internal server error (logged)"), []

    def _done(self, entry, run_params, task, request, results, t0: float) -> tuple[int, bytes, list]:
        dp = self.dataplane
        dp.observe(entry, run_params, time.perf_counter() - t0)  # threshold-source count, load controller
        return 200, orjson.dumps(dp._envelope(task, entry, request, run_params, results),
                                 option=orjson.OPT_SERIALIZE_NUMPY), []


RETRY = [(b"retry-after", RETRY_AFTER_S.encode())]


def replay(body: bytes, receive):
    """A receive() that hands the already-read body out once, then defers to the real one."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive_again():
        return pending.pop() if pending else await receive()

    return receive_again

"""Shedding decided from the head, and once (issue 20, the overload bar): a /classify or /qa request takes
its place in the model pool at admission (WorkPool.reserve), its job runs on that place, and a request
admitted so is never refused for load after its body was read; the startup objects are kept out of the
collector's full passes."""
import asyncio
import contextvars
import gc
import json
import threading
import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from conftest import MemoryTransport
from random_model import make_random_classifier

from service.api import create_app
from service.config import Settings
from service.pool import QueueFull, WorkPool

TEXT = "a gripping , funny film ."


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("omodels")
    make_random_classifier(root / "tiny-skim", d_small=4, seed=1)
    return root


@pytest.fixture(scope="module")
def client(models_dir):
    with TestClient(create_app(Settings(models_dir=str(models_dir)))) as c:
        yield c


def test_a_reserved_slot_is_the_next_job_of_its_context():
    pool = WorkPool(1, 0)
    gate = threading.Event()
    try:
        def holder():
            slot = pool.reserve()
            assert slot is not None and pool.admitted == 1
            assert not pool.full  # this context has room: its own place
            future = pool.submit(gate.wait, 10)  # runs on the reserved place, no second check
            assert pool.admitted == 1 and not slot.held
            return future, slot

        future, slot = contextvars.copy_context().run(holder)
        assert pool.full  # for every other context
        with pytest.raises(QueueFull):
            pool.submit(lambda: None)
        assert contextvars.copy_context().run(pool.reserve) is None
        slot.release()  # used by its job: releasing it again is a no-op
        assert pool.admitted == 1
        gate.set()
        future.result(10)
        assert pool.admitted == 0

        unused = contextvars.copy_context().run(pool.reserve)
        assert pool.admitted == 1
        unused.release()
        unused.release()
        assert pool.admitted == 0
        contextvars.copy_context().run(pool.reserve)  # dropped without a release: given back when collected
        gc.collect()
        assert pool.admitted == 0
    finally:
        gate.set()
        pool.shutdown()


def _post_scope(app, length: int) -> dict:
    return {"type": "http", "method": "POST", "path": "/classify", "raw_path": b"/classify", "query_string": b"",
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(length).encode())],
            "http_version": "1.1", "scheme": "http", "server": ("t", 80), "client": ("c", 1), "root_path": "",
            "app": app}


@pytest.mark.parametrize("text", [TEXT, "a good film " * 1000], ids=["inline", "on-the-pool"])
def test_a_request_admitted_at_its_head_is_not_shed_after_its_body(client, text):
    """The pool's last place is free when the head arrives; while the body is read another request takes
    the place that was left: this one still runs (before: 503 after its body had been read and parsed,
    at the pool or at the inline path's check)."""
    app, pool = client.app, client.app.state.pool
    body = json.dumps({"text": text}).encode()
    cap = pool.threads + pool.max_queue
    saved = pool._admitted
    sent = []

    async def receive():
        pool._admitted += 1  # someone else fills the pool meanwhile
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    pool._admitted = cap - 1
    try:
        asyncio.run(app(_post_scope(app, len(body)), receive, send))
        assert sent[0]["status"] == 200, sent
        assert pool._admitted == cap  # its own place given back; the other request's still held
    finally:
        pool._admitted = saved


def test_a_refused_request_gives_its_place_back(client):
    pool = client.app.state.pool
    before = pool.admitted
    r = client.post("/classify", json={"text": ""})  # 422 from the route, after admission took a place
    assert r.status_code == 422
    r = client.post("/classify?model=nope", json={"text": TEXT})
    assert r.status_code == 404
    r = client.post("/classify", content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert pool.admitted == before


def test_full_pool_is_still_shed_at_the_head(client):
    pool = client.app.state.pool
    saved = pool._admitted
    pool._admitted = pool.threads + pool.max_queue
    try:
        r = client.post("/classify", json={"text": TEXT})
        assert r.status_code == 503 and r.json()["code"] == "overloaded" and r.headers["retry-after"] == "1"
    finally:
        pool._admitted = saved
    assert client.post("/classify", json={"text": TEXT}).status_code == 200


def test_a_server_process_freezes_its_startup_objects(models_dir):
    gc.unfreeze()
    app = create_app(Settings(models_dir=str(models_dir)))
    app.state.freeze_gc = True  # as app_from_env (the uvicorn factory) sets it
    try:
        with TestClient(app) as c:
            assert c.get("/readyz").status_code == 200
            assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


# --- the batch limit while the body streams ------------------------------------------------------------

def _feed(guard, body: bytes, rng) -> bool:
    i = 0
    while i < len(body):
        n = rng.choice([1, 2, 3, 7, 64, 4096, len(body)])
        if not guard.feed(body[i:i + n]):
            return False
        i += n
    return True


def _random_text(rng) -> str:
    alphabet = ['a', ' ', '"', '\\', '\n', 'é', '\u2028', ',', '[', ']', '{', '}', ':', 'x' * 40, '\\"', '\\\\']
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))


def _random_body(rng, limit: int) -> tuple[bytes, str, int]:
    n = rng.choice([0, 1, limit - 1, limit, limit + 1, limit + 5])
    if rng.random() < 0.5:
        key, items = "texts", [_random_text(rng) for _ in range(n)]
        other = {"text": _random_text(rng)} if rng.random() < 0.2 else {}
    else:
        key = "items"
        items = [{"context": _random_text(rng), "question": _random_text(rng)} for _ in range(n)]
        other = {"context": _random_text(rng), "question": _random_text(rng)} if rng.random() < 0.2 else {}
    doc = dict(other)
    doc[key] = items
    if rng.random() < 0.5:  # the batch first or last
        doc = {key: items, **other}
    sep = rng.choice([(",", ":"), (", ", ": "), (" ,\n ", " :\t")])
    body = json.dumps(doc, separators=sep, ensure_ascii=rng.random() < 0.5).encode()
    return body, key, n


def test_batch_guard_counts_items_as_the_parser_does():
    """Random batches (strings full of quotes, escapes, brackets and commas; QA items as objects; other
    keys before or after; any whitespace; any chunking): refused exactly when the parsed batch is over
    the limit, so a body within the limits is never refused by it."""
    import random

    from service.api.body import BatchGuard

    rng = random.Random(20)
    limit = 4
    for _ in range(3000):
        body, key, n = _random_body(rng, limit)
        assert len(json.loads(body)[key]) == n
        ok = _feed(BatchGuard(key, limit), body, rng)
        assert ok == (n <= limit), (body, n)
        assert _feed(BatchGuard("texts" if key == "items" else "items", limit), body, rng)  # other routes' key


def test_batch_guard_gives_up_on_a_body_of_structure():
    from service.api.body import BatchGuard

    body = json.dumps({"texts": [1] * 200_000}).encode()  # numbers: nothing a route takes; parsed check decides
    guard = BatchGuard("texts", 300_000)
    assert guard.feed(body) and guard.off


def test_a_batch_over_the_limit_is_refused_before_the_rest_of_its_body(client):
    """Both paths (the fast path and the route, e.g. for a chunked body): 413 batch_too_large as the
    first item past the limit arrives, the rest of the body never read."""
    limit = client.app.state.settings.max_batch
    items = b", ".join([b'"a good film"'] * (limit + 1))
    head, tail = b'{"texts": [' + items, b"]}"

    async def run(app, chunked: bool):
        sent, read = [], []

        async def receive():
            read.append(1)
            if len(read) == 1:
                return {"type": "http.request", "body": head, "more_body": True}
            raise AssertionError("the rest of the body was read")

        async def send(message):
            sent.append(message)

        scope = _post_scope(app, len(head) + len(tail))
        if chunked:
            scope["headers"] = [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")]
        await app(scope, receive, send)
        return sent

    for chunked in (False, True):
        sent = asyncio.run(run(client.app, chunked))
        assert sent[0]["status"] == 413, (chunked, sent)
        assert json.loads(sent[1]["body"])["code"] == "batch_too_large"
    r = client.post("/classify", json={"texts": ["a good film"] * limit})
    assert r.status_code == 200 and len(r.json()["results"]) == limit
    r = client.post("/classify", json={"texts": ["a good film"] * (limit + 1)})
    assert r.status_code == 413 and r.json()["code"] == "batch_too_large"


def test_a_body_waiting_for_the_budget_holds_no_pool_place(client, monkeypatch):
    """Bodies waiting (unread) for room in the body budget do not take the model pool's places meanwhile;
    the place is taken once the body has room."""
    from service.api import admission

    monkeypatch.setattr(admission, "ADMIT_WAIT_S", 1.0)
    app, pool, budget = client.app, client.app.state.pool, client.app.state.body_budget
    body = json.dumps({"text": TEXT}).encode()
    seen, sent = [], []

    async def receive():
        seen.append(pool.admitted)
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    async def main():
        before = pool.admitted
        request = asyncio.ensure_future(app(_post_scope(app, len(body)), receive, send))
        await asyncio.sleep(0.1)
        assert not seen and pool.admitted == before  # waiting for the budget, no place taken
        budget.release(len(body))
        await request
        assert seen == [before + 1] and pool.admitted == before  # its place, while its body was read

    budget.used = budget.limit  # full: room comes when another body is released
    try:
        asyncio.run(main())
        assert sent[0]["status"] == 200
    finally:
        budget.used = 0


# --- the connection's own decision -----------------------------------------------------------------------

@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_the_connection_decides_once_and_keeps_the_connection(parser):
    """A whole POST to /classify: with room, the connection's callback takes its pool place and the
    request's ASGI task starts holding it; without, 503 from the callback, the connection kept open with
    its idle timer re-armed (closed when the client asked for that)."""
    import types

    import uvicorn
    from uvicorn.server import ServerState

    from service.api import admission, fast_path
    from service.api.admission import BodyBudget
    from service.api.protocol import guarded_protocol
    from service.pool import pool_slot

    body = b'{"text": "a good film"}'
    request = (b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
               % len(body)) + body
    seen = []

    async def app(scope, receive, send):
        seen.append(pool_slot.get())
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    async def main():
        pool = WorkPool(1, 0)
        admission.ACTIVE = types.SimpleNamespace(pool=pool, body_budget=BodyBudget(1_000_000))
        fast_path.ACTIVE = None  # no app's fast path here (an earlier test's would answer inline)
        config = uvicorn.Config(app=app, log_level="warning")
        config.load()
        protocol = guarded_protocol(parser)(config=config, server_state=ServerState(), app_state={})
        transport = MemoryTransport()
        protocol.connection_made(transport)
        protocol.data_received(request)
        assert pool.admitted == 1 and pool_slot.get() is None  # taken in the callback, not left in its context
        await asyncio.sleep(0.05)
        assert seen and seen[0] is not None and seen[0].pool is pool  # the task started holding it
        seen[0].release()
        assert b"200 OK" in b"".join(transport.out) and not transport.closing
        transport.out.clear()

        pool._admitted = 1  # full
        protocol.data_received(request)
        reply = b"".join(transport.out)
        assert reply.startswith(b"HTTP/1.1 503 ") and b"connection: close" not in reply and not transport.closing
        assert b"server: uvicorn" not in reply and len(seen) == 1  # the connection's answer, no ASGI task
        timer = protocol.timeout_keep_alive_task
        assert timer is not None
        protocol.data_received(request)
        assert protocol.timeout_keep_alive_task is not timer and timer.cancelled()  # re-armed per answer
        transport.out.clear()
        protocol.data_received(request.replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n", 1))
        assert b"connection: close" in b"".join(transport.out) and transport.closing
        protocol.connection_lost(None)
        pool.shutdown()

    saved = admission.ACTIVE, fast_path.ACTIVE
    try:
        asyncio.run(main())
    finally:
        admission.ACTIVE, fast_path.ACTIVE = saved

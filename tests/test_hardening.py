"""Hostile input in process (issue 20, items 2 and 7-10): the schema says what the server enforces, strict
query numbers, repeated parameters, HEAD /healthz, route labels of the docs, no training-machine paths,
the streaming text limit, admission before the body, and dead workers' live gauges."""
import asyncio
import json
import os
import re
import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from random_model import make_random_classifier, make_random_reader

from service.api import create_app
from service.api.body import TextRunGuard
from service.config import Settings

TEXT = "a gripping , funny film ."


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("hmodels")
    make_random_classifier(root / "tiny-skim", d_small=4, seed=1)
    make_random_reader(root / "tiny-qa", seed=3)
    manifest = json.loads((root / "tiny-skim" / "manifest.json").read_text())
    manifest["training"] = {"command": "python -m training.train --out-dir /tmp/runs8b --init-from .carry/x/y",
                            "data": "../shared/data/sst2", "tokenizer_module": "service/tokenizer.py"}
    (root / "tiny-skim" / "manifest.json").write_text(json.dumps(manifest))  # manifest is not checksummed
    return root


@pytest.fixture(scope="module")
def client(models_dir):
    with TestClient(create_app(Settings(models_dir=str(models_dir), max_text_bytes=1000, max_batch=4,
                                        max_body_bytes=20_000))) as c:
        yield c


def test_schema_declares_limits_and_exactly_one_of(client):
    jsonschema_rs = pytest.importorskip("jsonschema_rs")  # schemathesis's validator (dev extra)
    spec = client.get("/openapi.json").json()
    for path, good, bad in [
        ("/classify", [{"text": "a"}, {"texts": ["a", "b"]}, {"text": "a", "texts": None}],
         [{}, {"text": "a", "texts": ["b"]}, {"text": ""}, {"text": "   "}, {"texts": []}, {"texts": ["a"] * 5},
          {"text": "x" * 1001}, {"text": "a", "extra": 1}]),
        ("/qa", [{"context": "c", "question": "q"}, {"items": [{"context": "c", "question": "q"}]}],
         [{}, {"context": "c"}, {"items": []}, {"context": "c", "question": "q", "items": []},
          {"items": [{"context": "c", "question": "q"}] * 5}]),
    ]:
        schema = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        validator = jsonschema_rs.Draft202012Validator(schema)
        for body in good:
            assert validator.is_valid(body), (path, body)
            assert client.post(path, json=body).status_code == 200, (path, body)
        for body in bad:
            assert not validator.is_valid(body), (path, body)
            assert 400 <= client.post(path, json=body).status_code < 500, (path, body)


@pytest.mark.parametrize("raw", ["0_5", "1_0", " 0.5", "inf", "nan", "0x1", "five"])
def test_threshold_must_be_a_plain_number(client, raw):
    r = client.post("/classify", params={"threshold": raw}, json={"text": TEXT})
    assert r.status_code == 422 and r.json()["code"] == "invalid_threshold"
    assert "expected a number" in r.json()["detail"] and repr(raw) in r.json()["detail"]
    r = client.post("/qa", params={"thresholds": f"{raw},0.2"}, json={"context": TEXT, "question": "what"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_threshold"


def test_plain_numbers_still_pass(client):
    for raw in ["0.5", "1", "0", ".5", "5e-1", "+0.25"]:
        assert client.post("/classify", params={"threshold": raw}, json={"text": TEXT}).status_code == 200, raw


@pytest.mark.parametrize("query", ["threshold=0.5&threshold=0.2", "model=tiny-skim&model=tiny-skim",
                                   "explain=true&explain=false"])
def test_repeated_query_parameter_is_422(client, query):
    r = client.post(f"/classify?{query}", json={"text": TEXT})
    assert r.status_code == 422 and r.json()["code"] == "repeated_parameter"


def test_head_healthz(client):
    r = client.head("/healthz")
    assert r.status_code == 200 and r.content == b""
    assert client.get("/healthz").json() == {"status": "ok"}


def test_docs_routes_have_their_own_label(client):
    client.get("/openapi.json")
    client.get("/docs")
    client.get("/no-such-path")
    text = client.get("/metrics").text
    assert 'endpoint="/openapi.json"' in text and 'endpoint="/docs"' in text and 'endpoint="unmatched"' in text
    assert 'endpoint="/healthz"' in text


def test_model_detail_hides_training_machine_paths(client):
    detail = client.get("/models/tiny-skim").json()
    dumped = json.dumps(detail)
    assert "/tmp/runs8b" not in dumped and ".carry" not in dumped and "../shared" not in dumped
    training = detail["manifest"]["training"]
    assert training["command"] == "python -m training.train --out-dir <path> --init-from <path>"
    assert training["tokenizer_module"] == "service/tokenizer.py"  # repository paths are kept


def test_text_limit_while_streaming_reads_little():
    """One huge string is refused after about max_text_bytes, not after the whole body."""
    guard = TextRunGuard(1000)
    assert guard.feed(b'{"text": "' + b"a" * 1000) and guard.feed(b'"}')
    guard = TextRunGuard(1000)
    assert guard.feed(b'{"text": "' + b"a" * 600)
    assert not guard.feed(b"a" * 600)  # 1200 bytes without a quote: certainly over
    guard = TextRunGuard(1000)  # escapes: 1200 raw bytes that decode to at most 200 characters pass
    assert guard.feed(b'{"text": "' + b"\\u00e9" * 200 + b'"}')


def _guard_verdict(body: bytes, chunk: int, limit: int = 1000) -> bool:
    guard = TextRunGuard(limit)
    return all(guard.feed(body[i:i + chunk]) for i in range(0, len(body), chunk))


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 999])
def test_text_guard_counts_only_inside_strings(chunk):
    """Never a false 413, whatever the chunking: only bytes inside a string count, escaped quotes and
    backslashes do not end one; and a string over the limit that spans chunks is always caught."""
    fine = [b"[" * 5000 + b"]" * 5000, b'{"text": ' + b"1" * 5000 + b"}", b'{"text": "a"' + b" " * 5000 + b"}",
            b'{"texts": [' + b", ".join([b'"' + b"x" * 900 + b'"'] * 8) + b"]}",
            b'{"text": "' + b'\\\"' * 300 + b'"}',  # 300 escaped backslash + escaped quote: 600 bytes of text
            b'{"text": "' + b"\\" * 1000 + b'"}']  # 1000 escaped backslashes decode to 1000 bytes: at the limit
    for body in fine:
        assert _guard_verdict(body, chunk), body[:40]
    over = [b'{"text": "' + b"a" * 1001 + b'"}', b'{"texts": ["a", "' + b"b" * 2000,
            b'{"text": "' + b'ab\\"' * 400 + b'"}']  # escaped quotes do not end the string: 1200 bytes
    for body in over:
        assert not _guard_verdict(body, chunk), body[:40]


def test_declared_body_over_limit_is_413_without_reading(client):
    r = client.post("/classify", content=b"{}", headers={"content-type": "application/json",
                                                         "content-length": "20001"})
    assert r.status_code == 413 and r.json()["code"] == "body_too_large"


def test_full_pool_sheds_before_reading_the_body(client):
    pool = client.app.state.pool
    saved = pool._admitted
    pool._admitted = pool.threads + pool.max_queue
    try:
        r = client.post("/classify", json={"text": TEXT})
        assert r.status_code == 503 and r.json()["code"] == "overloaded" and r.headers["retry-after"] == "1"
        assert client.get("/healthz").status_code == 200
    finally:
        pool._admitted = saved


def test_spent_body_budget_sheds(client):
    budget = client.app.state.body_budget
    budget.used = budget.limit
    try:
        r = client.post("/classify", json={"text": TEXT})
        assert r.status_code == 503 and r.json()["code"] == "overloaded"
    finally:
        budget.used = 0
    assert client.post("/classify", json={"text": TEXT}).status_code == 200
    assert budget.used == 0  # every charged byte was released



def _post_scope(app, length: int) -> dict:
    return {"type": "http", "method": "POST", "path": "/classify", "raw_path": b"/classify", "query_string": b"",
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(length).encode())],
            "http_version": "1.1", "scheme": "http", "server": ("t", 80), "client": ("c", 1), "root_path": "",
            "app": app}


def test_body_over_what_is_left_of_the_budget_waits_unread_then_is_shed(client, monkeypatch):
    """A declared body is reserved before it is read: one that does not fit what other bodies left waits
    (unread) for a release, then is served; if none comes in ADMIT_WAIT_S it is 503, still unread (many
    bodies at the limit at once: no mid-body refusals after reading most of each). Reservations are
    released; a body larger than the whole budget is refused at once."""
    import time

    from service.api import admission

    monkeypatch.setattr(admission, "ADMIT_WAIT_S", 0.2, raising=False)
    budget, app = client.app.state.body_budget, client.app
    body = json.dumps({"text": TEXT}).encode()
    read, sent = [], []

    async def receive():
        read.append(1)
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    async def released_soon():
        await asyncio.sleep(0.05)
        assert not read  # waiting, body unread
        budget.release(10)

    async def post_while_another_body_leaves():
        await asyncio.gather(app(_post_scope(app, len(body)), receive, send), released_soon())

    limit = budget.limit
    base = limit - len(body) + 1
    budget.used = base
    try:
        asyncio.run(app(_post_scope(app, len(body)), receive, send))
        assert sent[0]["status"] == 503 and not read
        assert json.loads(sent[1]["body"])["code"] == "overloaded"
        assert dict(sent[0]["headers"])[b"retry-after"] == b"1"
        assert budget.used == base
        sent.clear()
        asyncio.run(post_while_another_body_leaves())
        assert sent[0]["status"] == 200 and read
        assert budget.used == base - 10  # its reservation was released
        budget.used, read[:] = 0, []
        sent.clear()
        budget.limit = len(body) - 1  # a body the whole budget cannot hold: no waiting
        t0 = time.monotonic()
        asyncio.run(app(_post_scope(app, len(body)), receive, send))
        assert sent[0]["status"] == 503 and not read and time.monotonic() - t0 < 0.15
    finally:
        budget.used, budget.limit = 0, limit


def test_heap_is_trimmed_after_a_big_body_only(models_dir, monkeypatch):
    """glibc keeps freed heap: after a body of at least TRIM_BODY_BYTES the worker calls malloc_trim(0)
    (once for bodies released close together), after small ones never."""
    import time

    from service.api import admission

    calls = []
    monkeypatch.setattr(admission, "_malloc_trim", lambda: calls.append)
    monkeypatch.setattr(admission, "TRIM_BODY_BYTES", 2000)
    monkeypatch.setattr(admission, "TRIM_DELAY_S", 0.0)
    with TestClient(create_app(Settings(models_dir=str(models_dir), max_body_bytes=20_000))) as c:
        assert c.post("/classify", json={"text": TEXT}).status_code == 200
        time.sleep(0.2)
        assert calls == []
        assert c.post("/classify", json={"texts": [TEXT] * 2, "pad": "x" * 3000}).status_code == 422  # refused too
        deadline = time.monotonic() + 5
        while not calls and time.monotonic() < deadline:
            time.sleep(0.02)
        assert calls == [0]

def test_url_and_header_limits(models_dir):
    with TestClient(create_app(Settings(models_dir=str(models_dir), max_url_bytes=256,
                                        max_header_bytes=1024))) as c:
        r = c.get("/healthz-not" + "x" * 300)
        assert r.status_code == 414 and r.json()["code"] == "uri_too_long"
        r = c.get("/models", headers={"x-big": "y" * 2000})
        assert r.status_code == 431 and r.json()["code"] == "headers_too_large"


def test_client_gone_mid_body_is_499_without_traceback(client, caplog):
    """The ASGI app sees http.disconnect while reading the body: no 500, no traceback, counted as 499."""
    app = client.app
    messages = [{"type": "http.request", "body": b'{"text": "ab', "more_body": True}, {"type": "http.disconnect"}]
    sent = []

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/classify", "raw_path": b"/classify", "query_string": b"",
             "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
             "http_version": "1.1", "scheme": "http", "server": ("t", 80), "client": ("c", 1), "root_path": "",
             "app": app}
    with caplog.at_level("ERROR"):
        asyncio.run(app(scope, receive, send))
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    assert sent[0]["status"] == 499
    text = client.get("/metrics").text
    assert re.search(r'skimserve_request_duration_seconds_count\{endpoint="/classify",model="[\w-]*",status="499"\}', text)
    assert 'status="500"' not in text


def test_dead_workers_live_gauges_are_dropped(tmp_path):
    """A worker killed with -9 never runs mark_process_dead: its live gauge files are dropped at scrape."""
    import subprocess
    import sys

    code = ("from service import metrics; metrics.INFLIGHT.inc(2); metrics.QUEUE_DEPTH.inc(1); "
            "import os; print(os.getpid())")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    pid = int(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             check=True).stdout)
    assert (tmp_path / f"gauge_livesum_{pid}.db").exists()
    render = ("from service import metrics; import sys; sys.stdout.write(metrics.render()[0].decode())")
    text = subprocess.run([sys.executable, "-c", render], env=env, capture_output=True, text=True, check=True).stdout
    assert "skimserve_inflight_requests 0.0" in text and "skimserve_queue_depth 0.0" in text
    assert not (tmp_path / f"gauge_livesum_{pid}.db").exists()


def test_query_checks_for_a_raw_route():
    """The same checks as plain functions (service/api/inputs.py), for a route that is not FastAPI's."""
    from service.api.errors import ApiError
    from service.api.inputs import parse_threshold, parse_thresholds, query_params

    assert query_params(b"threshold=0.5&model=m&explain=") == {"threshold": "0.5", "model": "m", "explain": ""}
    with pytest.raises(ApiError) as exc:
        query_params(b"threshold=0.5&threshold=0.2")
    assert (exc.value.status, exc.value.code) == (422, "repeated_parameter")
    assert parse_threshold(None) is None and parse_threshold("0.25") == 0.25 and parse_threshold("1") == 1.0
    assert parse_thresholds("0.5,.3") == [0.5, 0.3]
    for raw in ["0_5", "nan", "inf", "1.5", "-0.1", "", " 0.5"]:
        with pytest.raises(ApiError) as exc:
            parse_threshold(raw)
        assert (exc.value.status, exc.value.code) == (422, "invalid_threshold"), raw
        with pytest.raises(ApiError):
            parse_thresholds(f"0.2,{raw}")

"""The plain-ASGI fast path (service/api/fast_path.py) against the FastAPI routes on the same registry:
every valid request it answers gives the same JSON (timings aside) with identical skim decisions, and
every request it does not take (bad input of any kind, unusual query or headers) gets exactly the
route's answer. (Models named fp-*: the Prometheus collectors are process-wide, other tests count
tiny-*.)"""
import pytest
from fastapi.testclient import TestClient

from conftest import without_timings
from random_model import make_random_classifier, make_random_reader
from service.api import fast_path
from service.config import Settings
from service.registry import Registry

TEXT = "the film was not very good but the acting was great ."
CONTEXT = "the film was not very good but the acting was great . the plot was awful and boring !"
QUESTION = "what was great ?"



@pytest.fixture(scope="module")
def clients(tmp_path_factory):
    from service.api.app import create_app

    root = tmp_path_factory.mktemp("fast-path-models")
    make_random_classifier(root / "fp-skim", d_small=4, seed=3)
    make_random_classifier(root / "fp-dense", d_small=0, seed=4)
    make_random_reader(root / "fp-reader", d_small=3, seed=1)
    registry = Registry(root, "reference", "fp-skim").load_all()
    limits = dict(models_dir=str(root), max_tokens=40, max_text_bytes=300, max_batch=3, inline_max_bytes=120)
    with TestClient(create_app(Settings(**limits), registry)) as fast, \
            TestClient(create_app(Settings(**limits, fast_path=False), registry)) as routes:
        yield fast, routes


@pytest.fixture
def answered(monkeypatch):
    """The requests the fast path answered itself (status), in order."""
    seen = []
    original = fast_path.FastPath._answer

    async def spy(self, scope, route, body):
        try:
            result = await original(self, scope, route, body)
        except fast_path.Fallback:
            seen.append("fallback")
            raise
        seen.append(result[0])
        return result

    monkeypatch.setattr(fast_path.FastPath, "_answer", spy)
    return seen


VALID = [
    ("/classify", "", {"text": TEXT}),
    ("/classify", "threshold=0.3", {"text": TEXT}),
    ("/classify", "threshold=0", {"text": TEXT}),
    ("/classify", "threshold=1", {"text": TEXT}),
    ("/classify", "threshold=.25&model=fp-dense", {"text": TEXT}),
    ("/classify", "threshold=0.4&explain=true", {"text": TEXT}),
    ("/classify", "explain=false", {"texts": [TEXT, "great acting", "awful !"]}),
    ("/classify", "model=fp-skim&threshold=0.5", {"text": "é and ü are not ascii , \u00e9t\u00e9 ."}),
    ("/classify", "threshold=0.3", {"text": " ".join([TEXT] * 3)}),  # over inline_max_bytes: the pool
    ("/classify", "budget=0.3", {"text": TEXT}),
    ("/classify", "budget=0.2&threshold=1", {"text": TEXT}),
    ("/classify", "budget=1&model=fp-dense", {"text": TEXT}),
    ("/qa", "budget=0.5&thresholds=1,1", {"context": CONTEXT, "question": QUESTION}),
    ("/qa", "", {"context": CONTEXT, "question": QUESTION}),
    ("/qa", "threshold=0.2&explain=true", {"context": CONTEXT, "question": QUESTION}),
    ("/qa", "thresholds=0.5,0.3", {"context": CONTEXT, "question": QUESTION}),
    ("/qa", "threshold=1.0", {"items": [{"context": CONTEXT, "question": QUESTION},
                                        {"context": "a b c .", "question": "b ?"}]}),
]


@pytest.mark.parametrize("path,query,body", VALID)
def test_valid_requests_answered_fast_and_identically(clients, answered, path, query, body):
    fast, routes = clients
    a = fast.post(f"{path}?{query}", json=body)
    b = routes.post(f"{path}?{query}", json=body)
    assert answered == [200], "the fast path should have answered this request itself"
    assert a.status_code == b.status_code == 200, (a.text, b.text)
    assert a.headers["content-type"] == b.headers["content-type"] == "application/json"
    ja, jb = a.json(), b.json()
    assert without_timings(ja) == without_timings(jb)  # same label, probabilities, skim decisions, FLOPs
    assert ja["latency_ms"] >= 0 if "latency_ms" in ja else all(r["latency_ms"] >= 0 for r in ja["results"])


RAW_JSON = "application/json"
NOT_TAKEN = [  # (path, query, raw body, content type): each one goes to the route, which answers
    ("/classify", "threshold=1.5", b'{"text": "good"}', RAW_JSON),
    ("/classify", "threshold=nan", b'{"text": "good"}', RAW_JSON),
    ("/classify", "threshold=1e-1", b'{"text": "good"}', RAW_JSON),
    ("/classify", "threshold=%200.3", b'{"text": "good"}', RAW_JSON),
    ("/classify", "threshold=0.3&threshold=0.4", b'{"text": "good"}', RAW_JSON),
    ("/classify", "threshold=", b'{"text": "good"}', RAW_JSON),
    ("/classify", "explain=yes", b'{"text": "good"}', RAW_JSON),
    ("/classify", "budget=0", b'{"text": "good"}', RAW_JSON),
    ("/classify", "budget=1.5", b'{"text": "good"}', RAW_JSON),
    ("/classify", "budget=nan", b'{"text": "good"}', RAW_JSON),
    ("/classify", "budget=0.5&model=fp-dense", b'{"text": "good"}', RAW_JSON),  # 400 budget_unsupported
    ("/classify", "explain=1", b'{"text": "good"}', RAW_JSON),
    ("/classify", "unknown=1", b'{"text": "good"}', RAW_JSON),
    ("/classify", "model=nope", b'{"text": "good"}', RAW_JSON),
    ("/classify", "model=fp-reader", b'{"text": "good"}', RAW_JSON),
    ("/classify", "", b'{"text": "   "}', RAW_JSON),
    ("/classify", "", b'{"text": "' + b"word " * 70 + b'"}', RAW_JSON),  # over max_text_bytes
    ("/classify", "", b'{"text": "' + b"a " * 60 + b'"}', RAW_JSON),  # over max_tokens
    ("/classify", "", b'{"texts": ["a", "b", "c", "d"]}', RAW_JSON),
    ("/classify", "", b'{"texts": []}', RAW_JSON),
    ("/classify", "", b'{"text": "a", "texts": ["b"]}', RAW_JSON),
    ("/classify", "", b'{"text": 3}', RAW_JSON),
    ("/classify", "", b'{"text": "good", "extra": 1}', RAW_JSON),
    ("/classify", "", b'["good"]', RAW_JSON),
    ("/classify", "", b'{"text": "good"', RAW_JSON),
    ("/classify", "", b'', RAW_JSON),
    ("/classify", "", b'{"text": "\\ud800"}', RAW_JSON),
    ("/classify", "", b'{"text": NaN}', RAW_JSON),
    ("/classify", "", b'{"text": "good", "text": 3}', RAW_JSON),  # duplicate key: the last one counts
    ("/classify", "", b'{"text": "\xff"}', RAW_JSON),
    ("/classify", "", b'{"text": "good"}', "text/plain"),
    ("/classify", "", b'{"text": "good"}', "application/json; charset=latin-1"),
    ("/qa", "thresholds=0.5", b'{"context": "a b", "question": "b"}', RAW_JSON),
    ("/qa", "thresholds=0.5,x", b'{"context": "a b", "question": "b"}', RAW_JSON),
    ("/qa", "", b'{"context": "a b"}', RAW_JSON),
    ("/qa", "model=fp-skim", b'{"context": "a b", "question": "b"}', RAW_JSON),
]


RAW_VALID = [  # bodies the route accepts that a stricter JSON parser would not: the fast path reads them alike
    b'\xef\xbb\xbf{"text": "good film"}',  # a BOM
    b'{"text": 3, "text": "good film"}',  # a duplicate key: the last one counts
    b'{"text": "good \\u00e9t\\u00e9"}',
]


@pytest.mark.parametrize("raw", RAW_VALID)
def test_raw_bodies_read_as_the_route_reads_them(clients, answered, raw):
    fast, routes = clients
    a = fast.post("/classify?threshold=0.3", content=raw, headers={"content-type": RAW_JSON})
    b = routes.post("/classify?threshold=0.3", content=raw, headers={"content-type": RAW_JSON})
    assert answered == [200] and a.status_code == b.status_code == 200, (a.text, b.text)
    assert without_timings(a.json()) == without_timings(b.json())


@pytest.mark.parametrize("path,query,raw,ctype", NOT_TAKEN)
def test_requests_not_taken_get_the_routes_answer(clients, answered, path, query, raw, ctype):
    fast, routes = clients
    a = fast.post(f"{path}?{query}", content=raw, headers={"content-type": ctype})
    b = routes.post(f"{path}?{query}", content=raw, headers={"content-type": ctype})
    assert 200 not in answered
    assert a.status_code == b.status_code, (a.text, b.text)
    assert without_timings(a.json()) == without_timings(b.json())


def test_unusual_requests_reach_the_route(clients, answered):
    fast, _ = clients
    r = fast.post("/classify?threshold=0.3", content=b'{"text": "good"}',
                  headers={"content-type": RAW_JSON, "transfer-encoding": "chunked"})
    assert r.status_code == 200 and answered == []  # chunked: not taken, the route answers
    assert fast.get("/classify").status_code == 405 and answered == []


def test_fast_path_counts_in_request_metrics(clients):
    fast, _ = clients
    fast.post("/classify?threshold=0.3", json={"text": TEXT})
    text = fast.get("/metrics").text
    line = [s for s in text.splitlines() if s.startswith("skimserve_request_duration_seconds_count{")
            and 'endpoint="/classify"' in s and 'model="fp-skim"' in s and 'status="200"' in s]
    assert line and float(line[0].rsplit(" ", 1)[1]) >= 1


def test_queue_full_is_a_503(clients, monkeypatch):
    from service.pool import QueueFull

    fast, _ = clients
    app_state = fast.app.state

    async def full(*_a, **_k):
        raise QueueFull("test")

    monkeypatch.setattr(app_state.dataplane.pool, "run", full)
    r = fast.post("/classify", json={"text": " ".join([TEXT] * 3)})  # over inline_max_bytes: pool
    assert r.status_code == 503 and r.json()["code"] == "overloaded" and r.headers["retry-after"] == "1"

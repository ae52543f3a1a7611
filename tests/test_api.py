"""HTTP API in-process (FastAPI TestClient): every endpoint, every bad input, the queue-full path, the
threshold dial on the shipped sst2-skim model (figures equal the engine's), /metrics through promtool."""
import shutil
import subprocess
import threading
import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's TestClient warns about httpx versions
    from fastapi.testclient import TestClient

from service import metrics
from service.api import create_app
from service.artifacts import load_artifact
from service.config import Settings
from service.families import build_model
from random_model import make_random_classifier

from conftest import MODELS_DIR  # noqa: E402

PROMTOOL = shutil.which("promtool")
TEXT = "the film was not very good but the acting was great ."
LIMITS = dict(max_text_bytes=2000, max_tokens=50, max_batch=4, max_body_bytes=52_000)


@pytest.fixture(scope="module")
def app(random_models_dir):
    return create_app(Settings(models_dir=str(random_models_dir), pool_threads=2, max_queue=4, **LIMITS))


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


def metric_value(text: str, name: str, **labels) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


# --- endpoints ---------------------------------------------------------------------------------------
def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_readyz_when_loaded(client):
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"ready": True, "models": ["tiny-lstm", "tiny-skim"]}


def test_not_ready_before_startup(random_models_dir):
    """Without the lifespan startup (models not loaded/warmed) readiness and model routes answer 503."""
    c = TestClient(create_app(Settings(models_dir=str(random_models_dir))))  # no `with`: no startup
    r = c.get("/readyz")
    assert r.status_code == 503 and r.json()["ready"] is False and r.headers["Retry-After"]
    assert c.get("/healthz").status_code == 200
    for method, path in (("POST", "/classify"), ("GET", "/models"), ("GET", "/models/tiny-skim")):
        r = c.request(method, path, json={"text": TEXT})
        assert r.status_code == 503 and r.json()["code"] == "not_ready" and r.headers["Retry-After"], path


def test_models_list(client):
    body = client.get("/models").json()
    assert body["default"] == "tiny-skim"  # the first skimming model when none is configured (the dial works)
    by_name = {m["name"]: m for m in body["models"]}
    assert set(by_name) == {"tiny-lstm", "tiny-skim"}
    assert by_name["tiny-skim"]["family"] == "skim-lstm" and by_name["tiny-lstm"]["family"] == "lstm"
    assert by_name["tiny-skim"]["default_threshold"] == 0.5 and by_name["tiny-skim"]["version"] == "0-random"
    assert by_name["tiny-skim"]["default"] is True and by_name["tiny-lstm"]["default"] is False
    assert by_name["tiny-skim"]["skims"] is True and by_name["tiny-lstm"]["skims"] is False
    assert body["defaults"] == {"classify": "tiny-skim"}
    assert all(m["kernel"] for m in body["models"])


def test_model_detail_and_card(tmp_path):
    make_random_classifier(tmp_path / "carded", seed=3)
    (tmp_path / "carded" / "card.json").write_text('{"sweep": [{"threshold": 0.5, "accuracy": 0.5}]}')
    (tmp_path / "carded" / "card.md").write_text("# carded\nrandom weights\n")
    with TestClient(create_app(Settings(models_dir=str(tmp_path)))) as c:
        d = c.get("/models/carded").json()
        assert d["name"] == "carded" and d["manifest"]["family"] == "skim-lstm"
        assert d["card"] == {"sweep": [{"threshold": 0.5, "accuracy": 0.5}]}
        assert d["card_markdown"].startswith("# carded") and d["has_card"] is True


def test_model_detail_without_card(client):
    d = client.get("/models/tiny-skim").json()
    assert d["manifest"]["name"] == "tiny-skim" and "files" in d["manifest"]
    assert d["card"] is None and d["has_card"] is False


def test_unknown_model_detail(client):
    r = client.get("/models/nope")
    assert r.status_code == 404 and r.json()["code"] == "unknown_model" and "tiny-skim" in r.json()["detail"]


def test_classify_single(client):
    r = client.post("/classify", params={"model": "tiny-skim", "threshold": 0.4}, json={"text": TEXT})
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["model"] == "tiny-skim" and b["version"] == "0-random" and b["threshold"] == 0.4 and b["kernel"]
    assert b["label"] in ("negative", "positive")
    assert set(b["probabilities"]) == {"negative", "positive"}
    assert abs(sum(b["probabilities"].values()) - 1) < 1e-5
    assert b["tokens"] == 12 and 0 <= b["skimmed"] <= 12
    assert b["skim_rate"] == pytest.approx(b["skimmed"] / 12)
    assert b["flop_reduction"] == pytest.approx(b["flops_full"] / b["flops"])
    assert b["latency_ms"] > 0 and b["per_token_us"] == pytest.approx(1000 * b["latency_ms"] / 12)
    assert "explanation" not in b


def test_classify_defaults(client):
    b = client.post("/classify", json={"text": TEXT}).json()
    assert b["model"] == "tiny-skim" and b["threshold"] == 0.5
    dense = client.post("/classify", params={"model": "tiny-lstm"}, json={"text": TEXT}).json()
    assert dense["model"] == "tiny-lstm" and dense["threshold"] == 0.5 and dense["skimmed"] == 0


def test_classify_batch_equals_singles(client):
    texts = [TEXT, "boring !", "a great , funny movie"]
    r = client.post("/classify", params={"model": "tiny-skim", "threshold": 0.3}, json={"texts": texts})
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["model"] == "tiny-skim" and b["threshold"] == 0.3 and len(b["results"]) == 3
    for text, res in zip(texts, b["results"]):
        one = client.post("/classify", params={"model": "tiny-skim", "threshold": 0.3}, json={"text": text}).json()
        for k in ("label", "tokens", "skimmed", "flops", "flops_full"):
            assert res[k] == one[k], k
        assert res["probabilities"] == pytest.approx(one["probabilities"])


def test_classify_explain(client):
    thr = 0.45
    b = client.post("/classify", params={"model": "tiny-skim", "threshold": thr, "explain": "true"},
                    json={"text": TEXT}).json()
    ex = b["explanation"]
    assert len(ex) == b["tokens"]
    assert sum(t["decision"] == "skim" for t in ex) == b["skimmed"]
    for t in ex:
        assert TEXT[t["start"]:t["end"]].lower() == t["token"]
        assert t["decision"] == ("skim" if t["p_skim"] > thr else "read")
        assert 0.0 <= t["p_skim"] <= 1.0


def test_threshold_extremes(client):
    never = client.post("/classify", params={"model": "tiny-skim", "threshold": 1.0}, json={"text": TEXT}).json()
    assert never["skimmed"] == 0 and never["skim_rate"] == 0.0
    zero = client.post("/classify", params={"model": "tiny-skim", "threshold": 0.0}, json={"text": TEXT}).json()
    assert zero["skimmed"] >= never["skimmed"] and zero["flops"] <= never["flops"]


def test_deterministic(client):
    a = client.post("/classify", params={"model": "tiny-skim", "threshold": 0.5, "explain": True}, json={"text": TEXT})
    b = client.post("/classify", params={"model": "tiny-skim", "threshold": 0.5, "explain": True}, json={"text": TEXT})
    strip = lambda d: {k: v for k, v in d.items() if k not in ("latency_ms", "per_token_us")}  # noqa: E731
    assert strip(a.json()) == strip(b.json())


def test_openapi_docs(client):
    spec = client.get("/openapi.json").json()
    assert {p for p in spec["paths"] if not p.startswith("/v2")} == {  # /v2: tests/test_oip_fuzz.py
        "/classify", "/qa", "/models", "/models/{name}", "/healthz", "/readyz", "/metrics"}
    params = {p["name"]: p for p in spec["paths"]["/classify"]["post"]["parameters"]}
    assert "p_skim > threshold" in params["threshold"]["description"]
    assert "1.0 never skims" in params["threshold"]["description"]
    assert "p_skim > threshold" in spec["info"]["description"]
    body = spec["paths"]["/classify"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert [sorted(form["required"]) for form in body["oneOf"]] == [["text"], ["texts"]]  # exactly one of
    assert client.get("/docs").status_code == 200


# --- bad input: always a 4xx with a JSON reason, never a 500 or a hang ------------------------------------
JSON = {"content-type": "application/json"}
BAD = [
    # (id, query params, request kwargs, status, code)
    ("empty text", {}, {"json": {"text": ""}}, 422, "empty_text"),
    ("whitespace text", {}, {"json": {"text": "  \n\t "}}, 422, "empty_text"),
    ("whitespace in batch", {}, {"json": {"texts": ["good", " "]}}, 422, "empty_text"),
    ("text over byte limit", {}, {"json": {"text": "ab " * 700}}, 413, "text_too_large"),
    ("text over token limit", {}, {"json": {"text": "good " * 51}}, 413, "too_many_tokens"),
    ("batch over limit", {}, {"json": {"texts": ["good"] * 5}}, 413, "batch_too_large"),
    ("empty batch", {}, {"json": {"texts": []}}, 422, "empty_batch"),
    ("body over limit", {}, {"content": b'{"texts": [' + b'"a", ' * 12_000 + b'"a"]}', "headers": JSON}, 413,
     "body_too_large"),
    ("one huge text", {}, {"content": b'{"text": "' + b"a" * 30_000 + b'"}', "headers": JSON}, 413,
     "text_too_large"),
    ("threshold above 1", {"threshold": 1.5}, {"json": {"text": "good"}}, 422, "invalid_threshold"),
    ("threshold below 0", {"threshold": -0.1}, {"json": {"text": "good"}}, 422, "invalid_threshold"),
    ("threshold not a number", {"threshold": "abc"}, {"json": {"text": "good"}}, 422, "invalid_threshold"),
    ("threshold empty", {"threshold": ""}, {"json": {"text": "good"}}, 422, "invalid_threshold"),
    ("threshold nan", {"threshold": "nan"}, {"json": {"text": "good"}}, 422, "invalid_threshold"),
    ("threshold inf", {"threshold": "inf"}, {"json": {"text": "good"}}, 422, "invalid_threshold"),
    ("explain not a bool", {"explain": "maybe"}, {"json": {"text": "good"}}, 422, "invalid_request"),
    ("unknown model", {"model": "no-such-model"}, {"json": {"text": "good"}}, 404, "unknown_model"),
    ("text/plain", {}, {"content": b"good", "headers": {"content-type": "text/plain"}}, 415,
     "unsupported_media_type"),
    ("form body", {}, {"data": {"text": "good"}}, 415, "unsupported_media_type"),
    ("no content type", {}, {"content": b'{"text": "good"}'}, 415, "unsupported_media_type"),
    ("latin-1 charset", {}, {"content": b'{"text": "good"}', "headers": {"content-type": "application/json; charset=latin-1"}},
     415, "unsupported_media_type"),
    ("malformed JSON", {}, {"content": b'{"text": "good"', "headers": JSON}, 400, "malformed_json"),
    ("empty body", {}, {"content": b"", "headers": JSON}, 400, "malformed_json"),
    ("deeply nested JSON", {}, {"content": b"[" * 100_000 + b"]" * 100_000, "headers": JSON}, 413, "body_too_large"),
    ("nested JSON", {}, {"content": b"[" * 5000 + b"]" * 5000, "headers": JSON}, 400, "malformed_json"),
    ("non-UTF-8 bytes", {}, {"content": b'{"text": "caf\xe9"}', "headers": JSON}, 400, "invalid_encoding"),
    ("lone surrogate", {}, {"content": b'{"text": "\\ud800 good"}', "headers": JSON}, 400, "invalid_text"),
    ("both text and texts", {}, {"json": {"text": "good", "texts": ["bad"]}}, 422, "invalid_request"),
    ("neither text nor texts", {}, {"json": {}}, 422, "invalid_request"),
    ("null text", {}, {"json": {"text": None}}, 422, "invalid_request"),
    ("text not a string", {}, {"json": {"text": 5}}, 422, "invalid_request"),
    ("texts not strings", {}, {"json": {"texts": ["good", 5]}}, 422, "invalid_request"),
    ("body is a list", {}, {"json": ["good"]}, 422, "invalid_request"),
    ("unknown field", {}, {"json": {"text": "good", "threshold": 0.3}}, 422, "invalid_request"),
]


@pytest.mark.parametrize("params,kwargs,status,code", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input(client, params, kwargs, status, code):
    r = client.post("/classify", params={"model": "tiny-skim", **params}, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["code"] == code and isinstance(body["detail"], str) and body["detail"]


def test_threshold_error_names_the_parameter(client):
    body = client.post("/classify", params={"threshold": 7}, json={"text": "good"}).json()
    assert body["errors"][0]["loc"] == ["query", "threshold"] and "1" in body["detail"]


def test_wrong_method_and_absent_paths(client):
    r = client.get("/classify")
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"
    r = client.post("/nope", json={"question": "?", "context": "x"})
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = client.post("/qa", json={"question": "?", "context": "x"})  # no QA model is served here
    assert r.status_code == 404 and r.json()["code"] == "no_model_for_task"
    r = client.post("/qa", params={"model": "tiny-skim"}, json={"question": "?", "context": "x"})
    assert r.status_code == 400 and r.json()["code"] == "wrong_task"


def test_still_serving_after_errors(client):
    for _, params, kwargs, _, _ in BAD[:6]:
        client.post("/classify", params=params, **kwargs)
    r = client.post("/classify", params={"model": "tiny-skim"}, json={"text": TEXT})
    assert r.status_code == 200 and r.json()["tokens"] == 12


# --- overload: a full queue answers 503 + Retry-After at once ------------------------------------------
def test_queue_full_gives_503(random_models_dir):
    app = create_app(Settings(models_dir=str(random_models_dir), pool_threads=1, max_queue=1))
    release = threading.Event()
    with TestClient(app) as c:
        pool = app.state.pool
        blockers = [pool.submit(release.wait, 30), pool.submit(release.wait, 30)]  # 1 running + 1 waiting
        try:
            assert pool.waiting == 1
            m = c.get("/metrics").text
            assert metric_value(m, "skimserve_queue_depth") >= 1
            r = c.post("/classify", params={"model": "tiny-skim"}, json={"text": TEXT})
            assert r.status_code == 503, r.text
            assert r.headers["Retry-After"] == "1" and r.json()["code"] == "overloaded"
        finally:
            release.set()
        for f in blockers:
            f.result(5)
        r = c.post("/classify", params={"model": "tiny-skim"}, json={"text": TEXT})
        assert r.status_code == 200 and pool.admitted == 0 and pool.waiting == 0


def test_pool_releases_cancelled_jobs():
    from service.pool import QueueFull, WorkPool

    pool = WorkPool(threads=1, max_queue=1)
    release = threading.Event()
    running = pool.submit(release.wait, 30)
    queued = pool.submit(lambda: 1)
    with pytest.raises(QueueFull):
        pool.submit(lambda: 2)
    assert queued.cancel()  # e.g. the client went away while it waited
    assert pool.waiting == 0 and pool.admitted == 1
    assert pool.submit(lambda: 3) is not None  # the slot is free again
    release.set()
    running.result(5)
    pool.shutdown()


# --- metrics ---------------------------------------------------------------------------------------
FIXED_NAMES = ["skimserve_request_duration_seconds", "skimserve_token_latency_seconds", "skimserve_skim_rate",
               "skimserve_tokens_total", "skimserve_flops_total", "skimserve_flop_reduction", "skimserve_threshold",
               "skimserve_inflight_requests", "skimserve_queue_depth", "skimserve_model_info"]


def test_metrics_names_and_values(client):
    before = client.get("/metrics").text
    b = client.post("/classify", params={"model": "tiny-skim", "threshold": 0.2}, json={"text": TEXT}).json()
    client.post("/classify", params={"model": "tiny-skim", "threshold": 3}, json={"text": TEXT})
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    after = r.text
    for name in FIXED_NAMES:
        assert f"# TYPE {name.removesuffix('_total')}" in after, name

    def delta(name, **labels):
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    assert delta("skimserve_tokens_total", model="tiny-skim", decision="skim") == b["skimmed"]
    assert delta("skimserve_tokens_total", model="tiny-skim", decision="read") == b["tokens"] - b["skimmed"]
    assert delta("skimserve_flops_total", model="tiny-skim") == b["flops"]
    assert delta("skimserve_threshold_sum", model="tiny-skim") == pytest.approx(0.2)
    assert delta("skimserve_skim_rate_count", model="tiny-skim") == 1
    assert delta("skimserve_flop_reduction_sum", model="tiny-skim") == pytest.approx(b["flop_reduction"])
    assert delta("skimserve_token_latency_seconds_sum", model="tiny-skim") == pytest.approx(
        b["per_token_us"] / 1e6, rel=1e-6)
    assert delta("skimserve_request_duration_seconds_count", endpoint="/classify", model="tiny-skim",
                 status="200") == 1
    assert delta("skimserve_request_duration_seconds_count", endpoint="/classify", status="422") == 1
    assert metric_value(after, "skimserve_model_info", model="tiny-skim", family="skim-lstm", task="classify",
                        version="0-random") == 1
    assert metric_value(after, "skimserve_inflight_requests") == 0  # the scrape itself is not counted


def test_unmatched_paths_do_not_create_label_values(client):
    client.get("/wp-admin/some/random/path")
    text = client.get("/metrics").text
    assert "wp-admin" not in text and 'endpoint="unmatched"' in text


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package 'prometheus')")
def test_promtool_check_metrics(client):
    client.post("/classify", params={"model": "tiny-skim", "threshold": 0.3}, json={"texts": [TEXT, "good"]})
    client.post("/classify", params={"model": "nope"}, json={"text": TEXT})
    text = client.get("/metrics").text
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


# --- the shipped sst2-skim model: the dial works and the figures are the engine's ---------------------------
@pytest.fixture(scope="module")
def real(tmp_path_factory):
    if not (MODELS_DIR / "sst2-skim" / "manifest.json").exists():
        pytest.skip("models/sst2-skim is not shipped in this checkout")
    root = tmp_path_factory.mktemp("real-models")
    (root / "sst2-skim").symlink_to(MODELS_DIR / "sst2-skim")  # serve just the one model: faster startup
    app = create_app(Settings(models_dir=str(root)))
    with TestClient(app) as c:
        yield c, app


SST2 = ["it 's a charming and often affecting journey .",
        "the film was not very good but the acting was great .",
        "an utterly incompetent , boring and pointless movie that goes nowhere ."]


@pytest.mark.parametrize("text", SST2)
def test_sst2_threshold_dial(real, text):
    c, _ = real
    full = c.post("/classify", params={"model": "sst2-skim", "threshold": 1.0}, json={"text": text}).json()
    cheap = c.post("/classify", params={"model": "sst2-skim", "threshold": 0.3}, json={"text": text}).json()
    assert full["threshold"] == 1.0 and cheap["threshold"] == 0.3
    assert full["skim_rate"] == 0.0 and cheap["skim_rate"] > 0.0
    assert cheap["flops"] < full["flops"] and cheap["flop_reduction"] > full["flop_reduction"]
    assert full["flops_full"] == cheap["flops_full"] and full["tokens"] == cheap["tokens"]


@pytest.mark.parametrize("threshold", [1.0, 0.5, 0.3, 0.0])
def test_sst2_response_equals_engine(real, threshold):
    c, app = real
    served = app.state.registry.get("sst2-skim").model
    engine = build_model(load_artifact(MODELS_DIR / "sst2-skim"), served.kernel_name)
    b = c.post("/classify", params={"model": "sst2-skim", "threshold": threshold, "explain": True},
               json={"texts": SST2}).json()
    assert b["kernel"] == engine.kernel_name and b["version"] == engine.version
    for text, res in zip(SST2, b["results"]):
        ref = engine.classify(text, threshold)
        cost = ref.cost
        assert res["label"] == ref.label
        assert res["probabilities"] == pytest.approx(ref.probabilities, abs=1e-6)
        assert (res["tokens"], res["skimmed"], res["flops"], res["flops_full"]) == (
            cost.tokens, cost.skimmed, cost.flops, cost.flops_full)
        assert res["skim_rate"] == cost.skim_rate and res["flop_reduction"] == cost.flop_reduction
        assert [t["decision"] == "skim" for t in res["explanation"]] == ref.layer.skim.tolist()
        assert [t["p_skim"] for t in res["explanation"]] == pytest.approx(ref.layer.p_skim.tolist(), abs=1e-6)


def test_sst2_model_detail(real):
    c, _ = real
    d = c.get("/models/sst2-skim").json()
    assert d["family"] == "skim-lstm" and d["labels"] == ["negative", "positive"]
    assert d["manifest"]["sizes"]["small_hidden"] > 0
    assert d["has_card"] == (MODELS_DIR / "sst2-skim" / "card.json").exists()


def test_metrics_module_names_match_team_notes():
    """The collectors are the ones the dashboards query (service/metrics.py)."""
    names = {metrics.REQUEST_DURATION._name, metrics.TOKEN_LATENCY._name, metrics.SKIM_RATE._name,
             metrics.TOKENS._name + "_total", metrics.FLOPS._name + "_total", metrics.FLOP_REDUCTION._name,
             metrics.THRESHOLD._name, metrics.INFLIGHT._name, metrics.QUEUE_DEPTH._name, metrics.MODEL_INFO._name}
    assert names == set(FIXED_NAMES)

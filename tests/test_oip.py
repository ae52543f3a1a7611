"""The Open Inference Protocol (/v2, service/api/oip.py) against /classify and /qa: the real tritonclient.http
client (binary tensors, its default, and JSON) on a live server with the shipped sst2-skim, imdb-skim and
squad-skim-lstm-att gets the same labels, answers and cost figures as the native routes for the same inputs
and thresholds; errors come in the protocol's {"error": ...} shape with 4xx statuses."""
import json
import struct
import sys
import warnings

import httpx
import numpy as np
import pytest

from conftest import MODELS_DIR, ROOT

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

sys.path.insert(0, str(ROOT / "loadtest"))
from _server import running_server  # noqa: E402

CLASSIFIERS = ["sst2-skim", "imdb-skim"]
QA_MODEL = "squad-skim-lstm-att"
THRESHOLDS = [0.0, 0.3, 0.5, 1.0]
TEXTS = ["the film was not very good but the acting was great .", "a moving , funny film .",
         "a boring , awful movie that never ends .", "Ünïcode — naïve café, “quotes” and émojis 🎬",
         "an unexpectedly tender story , told with wit and a great deal of heart ."]
COST = ["tokens", "skimmed", "flops", "flops_full"]
QA_ITEMS = [("The Amazon rainforest covers much of the Amazon basin of South America .",
             "What does the Amazon rainforest cover ?"),
            ("Marie Curie won the Nobel Prize in Physics in 1903 and in Chemistry in 1911 .",
             "When did Curie win the prize in Chemistry ?")]


@pytest.fixture(scope="module")
def shipped_dir(tmp_path_factory):
    """The three shipped models the test needs (links, so the server loads only these)."""
    root = tmp_path_factory.mktemp("oip-models")
    for name in [*CLASSIFIERS, QA_MODEL]:
        if not (MODELS_DIR / name / "manifest.json").exists():
            pytest.skip(f"shipped model {name} absent")
        (root / name).symlink_to(MODELS_DIR / name)
    return root


@pytest.fixture(scope="module")
def server(shipped_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("oip-log") / "server.log"
    with running_server(shipped_dir, log=log, timeout=90) as url:
        httpx.get(f"{url}/readyz", timeout=30).raise_for_status()
        yield url


def triton(url):
    httpclient = pytest.importorskip("tritonclient.http")
    return httpclient, httpclient.InferenceServerClient(url=url.removeprefix("http://"), network_timeout=60)


def infer_texts(httpclient, client, model, texts, threshold, binary):
    inp = httpclient.InferInput("text", [len(texts)], "BYTES")
    inp.set_data_from_numpy(np.array(texts, dtype=object), binary_data=binary)
    outputs = None if binary else [httpclient.InferRequestedOutput(n, binary_data=False)
                                   for n in ["label", "probabilities", *COST]]
    return client.infer(model, [inp], outputs=outputs, parameters={"threshold": threshold})


def test_tritonclient_metadata_and_health(server):
    httpclient, client = triton(server)
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "skimserve" and "binary_tensor_data" in meta["extensions"]
    for model in CLASSIFIERS:
        assert client.is_model_ready(model)
        m = client.get_model_metadata(model)
        assert m["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
        assert {"label", "probabilities", "tokens", "skimmed", "flops", "flops_full", "latency_ms"} <= {
            o["name"] for o in m["outputs"]}
        native = httpx.get(f"{server}/models/{model}", timeout=30).json()
        assert m["versions"] == [native["version"]] and m["parameters"]["labels"] == ",".join(native["labels"])
    assert [i["name"] for i in client.get_model_metadata(QA_MODEL)["inputs"]] == ["context", "question"]
    assert not client.is_model_ready("no-such-model")


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("model", CLASSIFIERS)
def test_tritonclient_infer_equals_classify(server, model, binary):
    """Same labels, probabilities and cost figures as /classify, text by text, at each threshold."""
    httpclient, client = triton(server)
    labels = httpx.get(f"{server}/models/{model}", timeout=30).json()["labels"]
    for thr in THRESHOLDS:
        result = infer_texts(httpclient, client, model, TEXTS, thr, binary)
        native = httpx.post(f"{server}/classify", params={"model": model, "threshold": thr},
                            json={"texts": TEXTS}, timeout=30).json()["results"]
        got_labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label").tolist()]
        assert got_labels == [r["label"] for r in native], (model, thr)
        probs = result.as_numpy("probabilities")
        assert probs.shape == (len(TEXTS), len(labels))
        np.testing.assert_array_equal(probs, [[r["probabilities"][k] for k in labels] for r in native])
        for name in COST:
            assert result.as_numpy(name).tolist() == [r[name] for r in native], (model, thr, name)
        response = result.get_response()
        assert response["model_name"] == model and response["parameters"]["threshold"] == thr
        if binary:
            assert (result.as_numpy("latency_ms") > 0).all()
    # the dial moves the cost: full read at 1.0, fewer FLOPs at 0.0
    full = infer_texts(httpclient, client, model, TEXTS, 1.0, binary)
    skim = infer_texts(httpclient, client, model, TEXTS, 0.0, binary)
    assert (full.as_numpy("skimmed") == 0).all()
    assert skim.as_numpy("flops").sum() < full.as_numpy("flops").sum()


def test_tritonclient_versioned_infer_and_default_threshold(server):
    httpclient, client = triton(server)
    model = CLASSIFIERS[0]
    version = client.get_model_metadata(model)["versions"][0]
    inp = httpclient.InferInput("text", [2, 1], "BYTES")  # [batch, 1] as Triton models often declare it
    inp.set_data_from_numpy(np.array([[TEXTS[0]], [TEXTS[1]]], dtype=object))
    result = client.infer(model, [inp], model_version=version)
    native = httpx.post(f"{server}/classify", params={"model": model}, json={"texts": TEXTS[:2]}, timeout=30).json()
    assert result.get_response()["parameters"]["threshold"] == native["threshold"]
    assert result.as_numpy("flops").tolist() == [r["flops"] for r in native["results"]]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_qa_equals_qa(server, binary):
    httpclient, client = triton(server)
    inputs = []
    for name, values in (("context", [c for c, _ in QA_ITEMS]), ("question", [q for _, q in QA_ITEMS])):
        inp = httpclient.InferInput(name, [len(values)], "BYTES")
        inp.set_data_from_numpy(np.array(values, dtype=object), binary_data=binary)
        inputs.append(inp)
    names = ["answer", "start", "end", *COST]
    outputs = None if binary else [httpclient.InferRequestedOutput(n, binary_data=False) for n in names]
    for params, query in (({"threshold": 0.3}, {"threshold": 0.3}), ({"thresholds": "0.5,0.2"}, {"thresholds": "0.5,0.2"})):
        result = client.infer(QA_MODEL, inputs, outputs=outputs, parameters=params)
        native = httpx.post(f"{server}/qa", params={"model": QA_MODEL, **query},
                            json={"items": [{"context": c, "question": q} for c, q in QA_ITEMS]}, timeout=30).json()
        answers = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("answer").tolist()]
        assert answers == [r["answer"] for r in native["results"]]
        for name in names[1:]:
            assert result.as_numpy(name).tolist() == [r[name] for r in native["results"]], name


def test_tritonclient_errors(server):
    httpclient, client = triton(server)
    from tritonclient.utils import InferenceServerException

    def infer(model, name="text", texts=("good",), **params):
        inp = httpclient.InferInput(name, [len(texts)], "BYTES")
        inp.set_data_from_numpy(np.array(list(texts), dtype=object))
        return client.infer(model, [inp], parameters=params or None)

    cases = [(dict(model="no-such-model"), "404", "unknown model"),
             (dict(model=CLASSIFIERS[0], name="words"), "400", "unknown: words"),
             (dict(model=CLASSIFIERS[0], threshold=1.5), "400", "threshold"),
             (dict(model=CLASSIFIERS[0], texts=("   ",)), "422", "empty"),
             (dict(model=QA_MODEL), "400", "context, question")]
    for kwargs, status, text in cases:
        with pytest.raises(InferenceServerException) as err:
            infer(**kwargs)
        assert err.value.status() == status and text in err.value.message(), (kwargs, err.value)


# --- in-process: the error shape and the binary extension's edge cases ---------------------------------
@pytest.fixture(scope="module")
def app_client(random_models_dir):
    from service.api import create_app
    from service.config import Settings
    from service.registry import Registry

    registry = Registry(random_models_dir).load_all()
    with TestClient(create_app(Settings(models_dir=str(random_models_dir), max_text_bytes=1000, max_batch=4),
                               registry=registry)) as c:
        yield c


def bytes_tensor(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(b)) + b for b in items)


def binary_request(header: dict, data: bytes, length: int | None = None):
    head = json.dumps(header).encode()
    return head + data, {"Inference-Header-Content-Length": str(len(head) if length is None else length)}


def test_binary_extension_in_and_out(app_client):
    body, headers = binary_request({"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                                                "parameters": {"binary_data_size": 4 + 4 + 4 + 5}}],
                                    "outputs": [{"name": "tokens", "parameters": {"binary_data": True}},
                                                {"name": "label"}], "id": "r1"},
                                   bytes_tensor(b"good", b"a bad"))
    r = app_client.post("/v2/models/tiny-skim/infer", content=body, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    n = int(r.headers["inference-header-content-length"])
    head = json.loads(r.content[:n])
    assert head["id"] == "r1" and [o["name"] for o in head["outputs"]] == ["tokens", "label"]
    assert head["outputs"][0]["parameters"]["binary_data_size"] == 16
    assert np.frombuffer(r.content[n:], "<i8").tolist() == [1, 2]
    native = app_client.post("/classify?model=tiny-skim", json={"texts": ["good", "a bad"]}).json()
    assert head["outputs"][1]["data"] == [x["label"] for x in native["results"]]


@pytest.mark.parametrize("body,headers,status,text", [
    (b"{", {}, 400, "not valid JSON"),
    (b"[1]", {}, 400, "JSON object"),
    (b'{"inputs": []}', {}, 400, "at least 1"),
    (b'{"inputs": [{"name": "text", "shape": [1], "datatype": "FP32", "data": [1.0]}]}', {}, 400, "BYTES"),
    (b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [1]}]}', {}, 400, "strings"),
    (b'{"inputs": [{"name": "text", "shape": [-1], "datatype": "BYTES", "data": ["a"]}]}', {}, 400, "shape"),
    (b'{"inputs": [{"name": "text", "shape": [1, 2], "datatype": "BYTES", "data": [["a", "b"]]}]}', {}, 400, "shape"),
    (b'{"inputs": [{"name": "text", "shape": [0], "datatype": "BYTES", "data": []}]}', {}, 400, "empty batch"),
    (b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES"}]}', {}, 400, "no data"),
    (b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}],'
     b' "outputs": [{"name": "nope"}]}', {}, 400, "unknown output"),
    (b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}],'
     b' "parameters": {"threshold": true}}', {}, 400, "threshold"),
    (b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]},'
     b' {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}', {}, 400, "twice"),
    (b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["' + b"a " * 600 + b'"]}]}',
     {}, 413, "1000"),  # the text limit (the dataplane's check)
    (b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["' + b"a " * 20000 + b'"]}]}',
     {}, 413, "limit"),  # the body limit
    (b'{"inputs": [{"name": "text", "shape": [5], "datatype": "BYTES", "data": ["a", "b", "c", "d", "e"]}]}',
     {}, 413, "the limit is 4"),  # the batch limit
    (b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}',
     {"Inference-Header-Content-Length": "9999"}, 400, "Inference-Header-Content-Length"),
])
def test_bad_requests_get_the_protocol_error(app_client, body, headers, status, text):
    r = app_client.post("/v2/models/tiny-skim/infer", content=body, headers=headers)
    assert r.status_code == status and list(r.json()) == ["error"] and text in r.json()["error"], r.text


@pytest.mark.parametrize("size,data,text", [
    (10, bytes_tensor(b"good"), "does not fit"),
    (3, b"\x04\x00\x00", "truncated"),
    (6, b"\x09\x00\x00\x00ab", "runs past"),
    (5, b"\x01\x00\x00\x00\xff", "UTF-8"),
    (8, bytes_tensor(b"good") + b"xx", "belong to no input"),
])
def test_bad_binary_tensors(app_client, size, data, text):
    body, headers = binary_request({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                                "parameters": {"binary_data_size": size}}]}, data)
    r = app_client.post("/v2/models/tiny-skim/infer", content=body, headers=headers)
    assert r.status_code == 400 and text in r.json()["error"], r.text


def test_not_ready_and_unknown(app_client):
    assert app_client.get("/v2/models/nope").status_code == 404
    assert app_client.get("/v2/models/tiny-skim/versions/0/ready").status_code == 404
    registry = app_client.app.state.registry
    registry.ready = False
    try:
        for path in ("/v2/health/ready", "/v2/models/tiny-skim/ready"):
            r = app_client.get(path)
            assert r.status_code == 503 and "error" in r.json() and r.headers["retry-after"] == "1"
        assert app_client.get("/v2/health/live").status_code == 200
    finally:
        registry.ready = True
    assert app_client.get("/v2/health/ready").status_code == 200

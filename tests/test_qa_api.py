"""POST /qa end to end on random readers (dense and skim) beside a classifier: answers are substrings of
the context as sent, per-layer costs add up, thresholds per layer, every bad input a 4xx, and the task
check between /qa and /classify."""
import numpy as np
import pytest
from fastapi.testclient import TestClient

from random_model import make_random_classifier, make_random_reader
from service import flops as F
from service.config import Settings
from service.registry import Registry

CONTEXT = "the film was not very good but the acting was great . the plot was awful and boring !"
QUESTION = "what was great ?"


@pytest.fixture(scope="module")
def qa_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("qa-models")
    make_random_reader(root / "tiny-reader", d_small=3, seed=1)
    make_random_reader(root / "tiny-reader-dense", d_small=0, seed=2)
    make_random_classifier(root / "tiny-skim", d_small=4, seed=3)
    return root


@pytest.fixture(scope="module")
def client(qa_dir):
    from service.api.app import create_app

    settings = Settings(models_dir=str(qa_dir), max_tokens=200, max_text_bytes=2000, max_batch=4)
    registry = Registry(qa_dir).load_all()
    with TestClient(create_app(settings, registry)) as c:
        yield c


def test_qa_answer_and_cost(client):
    r = client.post("/qa", params={"model": "tiny-reader", "threshold": 0.5}, json={"context": CONTEXT, "question": QUESTION})
    assert r.status_code == 200, r.text
    b = r.json()
    assert CONTEXT[b["start"]:b["end"]] == b["answer"] and b["answer"]
    assert 0 < b["score"] <= 1 and b["model"] == "tiny-reader" and b["threshold"] == 0.5
    T = b["context_tokens"]
    assert T == 19 and b["tokens"] == 4 * T
    layers = b["per_layer"]
    assert [x["layer"] for x in layers] == ["l0.fw", "l0.bw", "l1.fw", "l1.bw"]
    assert sum(x["skimmed"] for x in layers) == b["skimmed"]
    extra = F.attention_flops(T, 4, 8) + F.span_head_flops(T, 20)
    assert sum(x["flops"] for x in layers) + extra == b["flops"]
    assert sum(x["flops_full"] for x in layers) + extra == b["flops_full"]
    assert all(x["latency_ms"] >= 0 for x in layers)


def test_qa_default_model_is_the_skimming_reader(client):
    b = client.post("/qa", json={"context": CONTEXT, "question": QUESTION}).json()
    assert b["model"] == "tiny-reader"
    assert client.get("/models").json()["defaults"] == {"classify": "tiny-skim", "qa": "tiny-reader"}


def test_per_layer_thresholds(client):
    never = client.post("/qa", params={"model": "tiny-reader", "thresholds": "1,1"},
                        json={"context": CONTEXT, "question": QUESTION}).json()
    assert never["skimmed"] == 0 and never["threshold"] == [1.0, 1.0]
    upper = client.post("/qa", params={"model": "tiny-reader", "thresholds": "1,0"},
                        json={"context": CONTEXT, "question": QUESTION}).json()
    by = {x["layer"]: x for x in upper["per_layer"]}
    assert by["l0.fw"]["skimmed"] == by["l0.bw"]["skimmed"] == 0
    assert by["l1.fw"]["threshold"] == 0.0 and by["l1.fw"]["skimmed"] > 0
    dense = client.post("/qa", params={"model": "tiny-reader-dense", "threshold": 0.0},
                        json={"context": CONTEXT, "question": QUESTION}).json()
    assert dense["skimmed"] == 0 and dense["flop_reduction"] == 1.0


def test_explain_gives_decisions_per_layer(client):
    b = client.post("/qa", params={"model": "tiny-reader", "explain": "true", "threshold": 0.3},
                    json={"context": CONTEXT, "question": QUESTION}).json()
    ex = b["explanation"]
    assert len(ex) == b["context_tokens"]
    for layer in b["per_layer"]:
        assert sum(t["decisions"][layer["layer"]] == "skim" for t in ex) == layer["skimmed"]
    assert "".join(CONTEXT[t["start"]:t["end"]] for t in ex if t["in_answer"]).replace(" ", "") == \
        b["answer"].replace(" ", "")


@pytest.mark.parametrize("context", [
    "Le café était « très » bon — naïve über alles ! 東京 is big .",
    "Cafe\u0301 au lait and cre\u0300me bru\u0302le\u0301e were served at noon .",  # not NFC: offsets as sent
    "\U0001F600 emoji first , then words : the plot was great .",
])
def test_answer_is_a_substring_of_the_context_as_sent(client, context):
    b = client.post("/qa", params={"model": "tiny-reader"}, json={"context": context, "question": "what ?"}).json()
    assert context[b["start"]:b["end"]] == b["answer"] and b["answer"].strip()
    ex = client.post("/qa", params={"model": "tiny-reader", "explain": "true"},
                     json={"context": context, "question": "what ?"}).json()["explanation"]
    from service.tokenizer import normalize

    for t in ex:  # every token's span points into the text as sent
        assert normalize(context[t["start"]:t["end"]]).lower() == t["token"]


def test_batch_equals_singles(client):
    items = [{"context": CONTEXT, "question": QUESTION}, {"context": "a boring , awful movie .", "question": "how ?"}]
    r = client.post("/qa", params={"model": "tiny-reader", "threshold": 0.3}, json={"items": items})
    assert r.status_code == 200, r.text
    for item, res in zip(items, r.json()["results"]):
        one = client.post("/qa", params={"model": "tiny-reader", "threshold": 0.3}, json=item).json()
        assert (one["answer"], one["start"], one["skimmed"], one["flops"]) == \
            (res["answer"], res["start"], res["skimmed"], res["flops"])


@pytest.mark.parametrize("params,body,status,code", [
    ({}, {"context": "", "question": "what ?"}, 422, "empty_text"),
    ({}, {"context": "   ", "question": "what ?"}, 422, "empty_text"),
    ({}, {"context": CONTEXT, "question": " \n"}, 422, "empty_text"),
    ({}, {"context": CONTEXT}, 422, "invalid_request"),
    ({}, {"question": "what ?"}, 422, "invalid_request"),
    ({}, {"context": CONTEXT, "question": "q", "items": []}, 422, "invalid_request"),
    ({}, {"items": []}, 422, "empty_batch"),
    ({}, {"items": [{"context": CONTEXT, "question": "q"}] * 5}, 413, "batch_too_large"),
    ({}, {"context": 5, "question": "q"}, 422, "invalid_request"),
    ({}, {"context": "word " * 300, "question": "q"}, 413, "too_many_tokens"),
    ({}, {"context": "x" * 2001, "question": "q"}, 413, "text_too_large"),
    ({"threshold": 1.5}, {"context": CONTEXT, "question": "q"}, 422, "invalid_threshold"),
    ({"thresholds": "0.5"}, {"context": CONTEXT, "question": "q"}, 422, "invalid_threshold"),
    ({"thresholds": "0.5,abc"}, {"context": CONTEXT, "question": "q"}, 422, "invalid_threshold"),
    ({"thresholds": "0.5,nan"}, {"context": CONTEXT, "question": "q"}, 422, "invalid_threshold"),
    ({"thresholds": "0.5,2"}, {"context": CONTEXT, "question": "q"}, 422, "invalid_threshold"),
    ({"model": "nope"}, {"context": CONTEXT, "question": "q"}, 404, "unknown_model"),
    ({"model": "tiny-skim"}, {"context": CONTEXT, "question": "q"}, 400, "wrong_task"),
])
def test_bad_input_is_a_clear_4xx(client, params, body, status, code):
    r = client.post("/qa", params={"model": "tiny-reader", **params}, json=body)
    assert r.status_code == status, r.text
    assert r.json()["code"] == code


def test_malformed_and_wrong_content_type(client):
    r = client.post("/qa", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == "malformed_json"
    r = client.post("/qa", content=b"context=a", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415


def test_reader_sent_to_classify_is_wrong_task(client):
    r = client.post("/classify", params={"model": "tiny-reader"}, json={"text": "a good film"})
    assert r.status_code == 400 and r.json()["code"] == "wrong_task"
    assert "tiny-skim" in r.json()["detail"]


def test_openapi_documents_qa(client):
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/qa"]["post"]
    assert {"400", "404", "413", "415", "422", "503"} <= set(op["responses"])
    assert {p["name"] for p in op["parameters"]} == {"threshold", "thresholds", "model", "explain", "budget"}


def test_qa_metrics_per_layer(client):
    client.post("/qa", params={"model": "tiny-reader", "threshold": 0.3}, json={"context": CONTEXT, "question": QUESTION})
    text = client.get("/metrics").text
    assert 'skimserve_layer_tokens_total{decision="skim",layer="l1.bw",model="tiny-reader"}' in text
    assert 'skimserve_layer_skim_rate_count{layer="l0.fw",model="tiny-reader"}' in text


def test_decode_span_respects_the_length_limit():
    from service.families.qa import decode_span

    s = np.array([0, 5, 0, 0, 0], np.float32)
    e = np.array([0, 0, 0, 0, 9], np.float32)
    assert decode_span(s, e, 5)[:2] == (1, 4)
    assert decode_span(s, e, 2)[:2] in ((1, 2), (3, 4))
    i, j, _ = decode_span(s, e, 1)
    assert i == j


@pytest.mark.parametrize("path,field", [("/classify", "text"), ("/qa", "context")])
def test_huge_json_integer_is_a_422_not_a_500(client, path, field):
    body = '{"%s": %s, "question": "q"}' % (field, "1" * 5000) if path == "/qa" else '{"text": %s}' % ("1" * 5000)
    r = client.post(path, params={"model": "tiny-reader" if path == "/qa" else "tiny-skim"}, content=body.encode(),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text

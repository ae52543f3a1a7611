"""?budget= on /classify and /qa: validation (422), budget_unsupported (400), what responses say
(threshold, budget, threshold_source), the cap through HTTP, the calibrated threshold and the OpenAPI table."""
import json
import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from random_model import make_random_classifier, make_random_reader

from service.api import create_app
from service.artifacts import MANIFEST, refresh_checksums
from service.config import Settings

LONG = " ".join(["the film was not very good but the acting was great ."] * 20)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("budget-models")
    make_random_classifier(root / "cal-skim", e=16, d=40, d_small=2, seed=3)
    make_random_classifier(root / "plain", d_small=0, seed=2)
    make_random_reader(root / "reader")
    m = json.loads((root / "cal-skim" / MANIFEST).read_text())
    m["calibration"] = {"split": "dev", "budget_rule": "curve",
                        "curve": [{"threshold": t, "flop_share": s, "accuracy": a, "skim_rate": 0.0,
                                   "flop_reduction": 1 / s, "per_token_us": 1.0}
                                  for t, s, a in ((0.0, 0.1, 0.6), (0.3, 0.25, 0.7), (0.5, 0.45, 0.8), (1.0, 1.0, 0.85))],
                        "budgets": [{"budget": 0.3, "threshold": 0.3, "dev_accuracy": 0.7}]}
    (root / "cal-skim" / MANIFEST).write_text(json.dumps(m))
    refresh_checksums(root / "cal-skim")
    (root / "cal-skim" / "card.json").write_text(json.dumps({"calibration": {"budgets": [
        {"budget": 0.3, "threshold": 0.3, "dev_accuracy": 0.7, "test_accuracy": 0.69}]}}))
    with TestClient(create_app(Settings(models_dir=str(root), pool_threads=1, default_model="cal-skim"))) as c:
        yield c


@pytest.mark.parametrize("bad", ["0", "-0.1", "1.5", "nan", "inf", "abc"])
def test_out_of_range_budget_is_422(client, bad):
    for path, body in (("/classify", {"text": LONG}), ("/qa", {"context": LONG, "question": "was it good"})):
        r = client.post(path, params={"budget": bad}, json=body)
        assert r.status_code == 422, (path, bad, r.text)
        assert r.json()["code"] == "invalid_budget"


def test_plain_lstm_refuses_a_budget_below_one(client):
    r = client.post("/classify", params={"model": "plain", "budget": 0.5}, json={"text": LONG})
    assert r.status_code == 400 and r.json()["code"] == "budget_unsupported"
    ok = client.post("/classify", params={"model": "plain", "budget": 1}, json={"text": LONG})
    assert ok.status_code == 200 and ok.json()["flops"] == ok.json()["flops_full"]


def test_sources_and_the_cap(client):
    r = client.post("/classify", json={"text": LONG}).json()
    assert r["threshold_source"] == "default" and "budget" not in r
    r = client.post("/classify", params={"threshold": 0.9}, json={"text": LONG}).json()
    assert r["threshold_source"] == "request" and r["threshold"] == 0.9
    r = client.post("/classify", params={"budget": 0.3}, json={"text": LONG}).json()
    assert r["threshold_source"] == "budget" and r["threshold"] == 0.3 and r["budget"] == 0.3
    for b in (0.2, 0.3, 0.5, 0.8):
        r = client.post("/classify", params={"budget": b, "threshold": 1.0}, json={"text": LONG}).json()
        assert r["threshold_source"] == "request" and r["budget"] == b
        assert r["flops"] - 2 * 40 * 2 <= b * (r["flops_full"] - 2 * 40 * 2), r  # recurrent part: head outside
        assert r["skimmed"] > 0


def test_qa_threshold_decides_budget_caps(client):
    body = {"context": LONG, "question": "was the acting great"}
    free = client.post("/qa", params={"threshold": 1.0}, json=body).json()
    capped = client.post("/qa", params={"threshold": 1.0, "budget": 0.6}, json=body).json()
    assert free["skimmed"] == 0 and capped["skimmed"] > 0 and capped["budget"] == 0.6
    for pl in capped["per_layer"]:
        assert pl["flops"] <= 0.6 * pl["flops_full"]


def test_openapi_states_accuracy_by_budget(client):
    spec = client.get("/openapi.json").json()
    param = next(p for p in spec["paths"]["/classify"]["post"]["parameters"] if p["name"] == "budget")
    assert "`cal-skim` (test accuracy): 0.3 → 69.0%" in param["description"]

"""Latency-objective mode (service/loadcontrol.py): the controller's steps along the calibrated curve, its
risk / hold / relax rule on a fake clock, and through HTTP: only requests that set neither a threshold nor a
budget are lowered, responses say so (threshold_source: load), Prometheus counts it."""
import json
import warnings
from types import SimpleNamespace

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from random_model import make_random_classifier

from service.api import create_app
from service.artifacts import MANIFEST, refresh_checksums
from service.calibration import Calibration
from service.config import Settings
from service.loadcontrol import LoadController, threshold_steps

CURVE = [{"threshold": t, "flop_share": s, "accuracy": a, "skim_rate": 0.0, "flop_reduction": 1 / s,
          "per_token_us": 1.0} for t, s, a in ((0.0, 0.1, 0.6), (0.1, 0.15, 0.65), (0.3, 0.25, 0.7),
                                               (0.5, 0.45, 0.8), (1.0, 1.0, 0.85))]


def fake_model(name="m", default=0.5, calibrated=True):
    cal = Calibration(CURVE, "curve") if calibrated else None
    layer = SimpleNamespace(cell=SimpleNamespace(skims=True))
    return SimpleNamespace(name=name, default_threshold=default, calibration=cal,
                           stack=SimpleNamespace(honours_budget=True, layers=[layer]))


def test_steps_follow_the_curve_down_to_the_floor():
    assert threshold_steps(fake_model(), 0.1) == [0.5, 0.3, 0.1]
    assert threshold_steps(fake_model(), 0.0) == [0.5, 0.3, 0.1, 0.0]
    assert threshold_steps(fake_model(calibrated=False), 0.2) == [0.5, 0.4, 0.3, 0.2]
    assert threshold_steps(fake_model(default=0.1), 0.1) == [0.1]


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_goes_down_under_risk_holds_then_returns_to_the_default():
    clock, waiting = Clock(), [0]
    ctl = LoadController(20, 0.1, lambda: waiting[0], threads=2, clock=clock, tick_s=0.1, hold_s=1.0)
    m = fake_model()
    ctl.register(m)
    assert ctl.max_level == 2 and ctl.threshold_for(m) == (0.5, "default")
    for _ in range(5):                      # p99 30 ms > 0.6 x 20 ms: one step per tick, down to the floor
        clock.t += 0.11
        ctl.observe(0.030)
    assert ctl.level == 2 and ctl.threshold_for(m) == (0.1, "load")
    clock.t += 1.5                          # old samples leave the window
    ctl.observe(0.010)                      # 10 ms: neither at risk nor relaxed (< 0.3 x 20 = 6 ms): holds
    for _ in range(20):
        clock.t += 0.11
        ctl.observe(0.010)
    assert ctl.level == 2
    clock.t += 1.5
    for _ in range(12):                     # 2 ms: relaxed; one step back per hold_s
        clock.t += 0.11
        ctl.observe(0.002)
    assert ctl.level == 1 and ctl.threshold_for(m) == (0.3, "load")
    for _ in range(12):
        clock.t += 0.11
        ctl.observe(0.002)
    assert ctl.level == 0 and ctl.threshold_for(m) == (0.5, "default")
    waiting[0] = 5                          # a queue beyond one job per thread is a risk on its own
    clock.t += 0.11
    ctl.observe(0.001)
    assert ctl.level == 1
    waiting[0] = 0
    clock.t += 1.5
    ctl.observe(0.002)
    for _ in range(3):                      # fast answers, but the loop runs 15 ms late: at risk
        clock.t += 0.11
        ctl.observe_lag(0.015)
    assert ctl.level == 2


def test_plain_models_are_never_lowered():
    ctl = LoadController(20, 0.1, lambda: 0, threads=1)
    plain = SimpleNamespace(name="p", default_threshold=1.0, calibration=None,
                            stack=SimpleNamespace(honours_budget=False, layers=[SimpleNamespace(
                                cell=SimpleNamespace(skims=False))]))
    ctl.register(plain)
    ctl.level = 3
    assert ctl.threshold_for(plain) == (1.0, "default")


def test_objective_must_be_positive():
    with pytest.raises(ValueError):
        LoadController(0, 0.1, lambda: 0, threads=1)


LONG = " ".join(["the film was not very good but the acting was great ."] * 10)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("load-models")
    make_random_classifier(root / "load-skim", e=16, d=40, d_small=2, seed=3)
    m = json.loads((root / "load-skim" / MANIFEST).read_text())
    m["calibration"] = {"split": "dev", "budget_rule": "curve", "curve": CURVE, "budgets": []}
    (root / "load-skim" / MANIFEST).write_text(json.dumps(m))
    refresh_checksums(root / "load-skim")
    settings = Settings(models_dir=str(root), pool_threads=1, default_model="load-skim", latency_objective_ms=20,
                        min_threshold=0.1)
    with TestClient(create_app(settings)) as c:
        yield c


def test_http_only_unset_requests_are_lowered_and_counted(client):
    ctl = client.app.state.dataplane.controller
    assert ctl is not None and ctl.max_level == 2
    ctl.tick_s = 1e9            # no automatic ticks during this test: the level is set by hand
    ctl.level = 2
    r = client.post("/classify", json={"text": LONG}).json()
    assert (r["threshold"], r["threshold_source"]) == (0.1, "load")
    r = client.post("/classify", params={"threshold": 0.9}, json={"text": LONG}).json()
    assert (r["threshold"], r["threshold_source"]) == (0.9, "request")
    r = client.post("/classify", params={"budget": 0.3}, json={"text": LONG}).json()
    assert r["threshold_source"] == "budget" and r["threshold"] == 0.3
    ctl.level = 0
    r = client.post("/classify", json={"text": LONG}).json()
    assert (r["threshold"], r["threshold_source"]) == (0.5, "default")
    text = client.get("/metrics").text
    assert 'skimserve_threshold_source_total{model="load-skim",source="load"} 1.0' in text
    assert 'skimserve_threshold_source_total{model="load-skim",source="request"} 1.0' in text
    assert "skimserve_load_level" in text


def test_setting_from_env_and_flag():
    s = Settings.from_env({"SKIMSERVE_LATENCY_OBJECTIVE_MS": "20", "SKIMSERVE_MIN_THRESHOLD": "0.2"})
    assert (s.latency_objective_ms, s.min_threshold) == (20.0, 0.2)
    with pytest.raises(ValueError, match="min_threshold"):
        Settings.from_env({"SKIMSERVE_MIN_THRESHOLD": "1.5"})
    assert Settings().latency_objective_ms == 0.0  # off by default

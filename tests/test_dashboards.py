"""Static checks of the Grafana dashboards, provisioning files and Prometheus config (no servers)."""
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from dashboards import build

ROOT = Path(__file__).resolve().parent.parent
DASH = ROOT / "dashboards"
FIXED_METRICS = {
    "skimserve_request_duration_seconds", "skimserve_token_latency_seconds", "skimserve_skim_rate",
    "skimserve_tokens_total", "skimserve_flops_total", "skimserve_flop_reduction", "skimserve_threshold",
    "skimserve_inflight_requests", "skimserve_queue_depth", "skimserve_model_info",
    "skimserve_layer_tokens_total", "skimserve_layer_skim_rate", "skimserve_threshold_source_total",
    "skimserve_load_level",
}
REQUIRED_TOPICS = ["request rate", "errors", "request latency", "per-token latency", "skim rate",
                   "flop reduction", "threshold", "tokens read vs skimmed", "queue depth", "models side by side",
                   "per-layer skim rate by layer", "layer-steps read vs skimmed by layer", "/qa request latency",
                   "qa flop reduction"]


def _yaml_value(text, key):
    m = re.search(rf"^\s*-?\s*{key}:\s*(\S+)", text, re.M)
    return m and m.group(1)


def test_committed_json_matches_generator():
    assert build.load_dashboards()["skimserve-overview.json"] == json.loads(json.dumps(build.overview()))


@pytest.mark.parametrize("name", sorted(build.load_dashboards()))
def test_dashboard_structure(name):
    d = build.load_dashboards()[name]
    assert d["uid"] and d["title"] and 36 <= d["schemaVersion"] <= 41
    uid = _yaml_value((DASH / "grafana/provisioning/datasources/prometheus.yml").read_text(), "uid")
    assert uid == build.DS_UID
    ids = [p["id"] for p in build.iter_panels(d)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    titles = " | ".join(p["title"].lower() for p in build.iter_panels(d))
    for topic in REQUIRED_TOPICS:
        assert topic in titles, f"no panel about {topic!r}"
    for p in build.iter_panels(d):
        g = p["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == uid, p["title"]
        assert p["targets"], f"panel {p['title']!r} has no query"
        for t in p["targets"]:
            assert t["expr"].strip() and t["datasource"]["uid"] == uid
            metrics = set(re.findall(r"\b(skimserve_[a-z_]+?)(?:_bucket|_sum|_count)?\b(?=[{\[ )])", t["expr"]))
            assert metrics and metrics <= FIXED_METRICS, (p["title"], metrics - FIXED_METRICS)
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            assert v["datasource"]["uid"] == uid and v["allValue"] == ".*"


def test_every_fixed_metric_is_on_a_dashboard():
    exprs = " ".join(e for d in build.load_dashboards().values() for _, e in build.panel_queries(d))
    for m in FIXED_METRICS:
        assert m in exprs, m


def test_fixed_metrics_are_the_services():
    """The names the dashboards may use are exactly the collectors service/metrics.py defines."""
    src = (ROOT / "service" / "metrics.py").read_text()
    defined = set(re.findall(r'^[A-Z_]+ = (?:Histogram|Counter|Gauge)\(\s*"(skimserve_[a-z_]+)"', src, re.M))
    assert defined == FIXED_METRICS


def test_question_answering_row():
    d = build.load_dashboards()["skimserve-overview.json"]
    panels = list(build.iter_panels(d))
    rows = [i for i, p in enumerate(panels) if p["type"] == "row"]
    start = next(i for i in rows if panels[i]["title"] == "Question answering")
    end = next((i for i in rows if i > start), len(panels))
    qa = {p["title"]: [t["expr"] for t in p["targets"]] for p in panels[start + 1:end]}
    skim = qa["QA per-layer skim rate by layer"]
    assert all("by (layer)" in e for e in skim) and any("skimserve_layer_tokens_total" in e for e in skim)
    assert any("by (layer, decision)" in e for e in qa["QA layer-steps read vs skimmed by layer"])
    lat = qa["/qa request latency p50 / p99"]
    assert len(lat) == 2 and all('endpoint="/qa"' in e for e in lat)
    assert lat[0].startswith("histogram_quantile(0.5,") and lat[1].startswith("histogram_quantile(0.99,")
    assert all("skimserve_flop_reduction" in e and 'task="qa"' in e for e in qa["QA FLOP reduction by model"])


def test_provisioning_points_at_dashboards():
    prov = (DASH / "grafana/provisioning/dashboards/skimserve.yml").read_text()
    assert "apiVersion: 1" in prov and "type: file" in prov and _yaml_value(prov, "path")
    ds = (DASH / "grafana/provisioning/datasources/prometheus.yml").read_text()
    assert "type: prometheus" in ds and "url: http://prometheus:9090" in ds


def test_prometheus_config():
    cfg = (DASH / "prometheus/prometheus.yml").read_text()
    assert "skimserve:8000" in cfg and "metrics_path: /metrics" in cfg
    promtool = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)
    if promtool:
        r = subprocess.run([promtool, "check", "config", str(DASH / "prometheus/prometheus.yml")],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr

"""Every dashboard panel's PromQL returns data from a real Prometheus scraping a real skimserve.

Starts the service (tiny random classifiers and tiny random QA readers) and Debian's `prometheus` on free loopback ports with a temp data
dir and a 1 s scrape interval, sends a bounded burst of /classify and /qa requests across thresholds
(per-layer thresholds too, plus a few bad requests), waits for two scrapes after the burst, then runs each panel query (Grafana variables
substituted) through /api/v1/query. Fails on any error or empty result. Skips only when the prometheus
binary is not installed (`apt-get install -y prometheus`; .ci/run installs it).
"""
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from random_model import make_random_classifier, make_random_reader

from dashboards import build

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "loadtest"))
from _server import free_port, running_server, stop, wait_http  # noqa: E402

PROMETHEUS = shutil.which("prometheus") or next(
    (p for p in ("/usr/bin/prometheus", "/usr/local/bin/prometheus") if Path(p).exists()), None)
pytestmark = pytest.mark.skipif(PROMETHEUS is None,
                                reason="prometheus binary not installed (apt-get install -y prometheus)")

QA_LAYERS = {"l0.fw", "l0.bw", "l1.fw", "l1.bw"}
QA = [("the film was not very good but the acting was great . the plot was boring .", "what was great ?"),
      ("a café story : naïve , funny and great ! " * 6, "what was the story ?")]
THRESHOLDS = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]
TEXTS = ["the film was not very good but the acting was great .",
         "a boring , awful movie with a bad plot and bad acting .",
         "funny and great ! " * 12]


@pytest.fixture(scope="module")
def models_with_readers(tmp_path_factory):
    """The classifiers of conftest's random_models_dir plus a skim and a dense random QA reader."""
    root = tmp_path_factory.mktemp("models-qa")
    make_random_classifier(root / "tiny-skim", d_small=4, seed=1)
    make_random_classifier(root / "tiny-lstm", d_small=0, seed=2)
    make_random_reader(root / "tiny-reader-skim", d_small=3, seed=3)
    make_random_reader(root / "tiny-reader", d_small=0, seed=4)
    return root


def _query(prom, expr):
    r = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10)
    body = r.json()
    return r.status_code, body


def _scrapes(prom):
    _, body = _query(prom, 'count_over_time(up{job="skimserve"}[10m])')
    return sum(float(s["value"][1]) for s in body.get("data", {}).get("result", []))


def _burst(url):
    with httpx.Client(base_url=url, timeout=30) as c:
        for i, thr in enumerate(THRESHOLDS * 2):
            for model in ("tiny-skim", "tiny-lstm"):
                r = c.post("/classify", params={"threshold": thr, "model": model}, json={"text": TEXTS[i % 3]})
                assert r.status_code == 200, r.text
        for i, thr in enumerate(THRESHOLDS):
            for model in ("tiny-reader-skim", "tiny-reader"):
                context, question = QA[i % 2]
                r = c.post("/qa", params={"threshold": thr, "model": model},
                           json={"context": context, "question": question})
                assert r.status_code == 200, r.text
        for params in ({"thresholds": "0.5,0.3"}, {"thresholds": "0.9,0.1"}, {}):
            r = c.post("/qa", params={"model": "tiny-reader-skim", **params},
                       json={"items": [{"context": ctx, "question": qu} for ctx, qu in QA]})
            assert r.status_code == 200, r.text
        # a batch, a few errors (so the error panels have real series too) and the other endpoints
        for method, path, params, body in (
                ("POST", "/classify", {"threshold": 0.5, "model": "tiny-skim"}, {"texts": TEXTS}),
                ("POST", "/classify", {"threshold": 0.5, "model": "no-such-model"}, {"text": "x"}),
                ("POST", "/classify", {"threshold": 7, "model": "tiny-skim"}, {"text": "x"}),
                ("POST", "/qa", {"model": "tiny-reader-skim"}, {"context": " ", "question": "what ?"}),
                ("GET", "/models", None, None), ("GET", "/healthz", None, None)):
            try:
                c.request(method, path, params=params, json=body)
            except httpx.HTTPError:
                pass


def test_every_panel_query_returns_data(models_with_readers, tmp_path):
    prom_port = free_port()
    with running_server(models_with_readers, log=tmp_path / "server.log") as url:
        target = url.removeprefix("http://")
        (tmp_path / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: skimserve\n    metrics_path: /metrics\n"
            f"    static_configs:\n      - targets: ['{target}']\n")
        log = open(tmp_path / "prometheus.log", "wb")
        prom_proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}",
             "--storage.tsdb.retention.time=1h", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT)
        prom = f"http://127.0.0.1:{prom_port}"
        try:
            wait_http(f"{prom}/-/ready", 30, prom_proc)
            _burst(url)
            # wait for two scrapes after the burst, and for the target to be up
            deadline = time.monotonic() + 30
            start = _scrapes(prom)
            while time.monotonic() < deadline:
                up = _query(prom, 'up{job="skimserve"}')[1]["data"]["result"]
                if up and up[0]["value"][1] == "1" and _scrapes(prom) >= start + 2:
                    break
                time.sleep(0.5)
            else:
                pytest.fail(f"Prometheus did not scrape {target} twice in 30 s")
            _burst(url)          # a second burst, so rate() over the window sees increases
            start = _scrapes(prom)
            while _scrapes(prom) < start + 2 and time.monotonic() < deadline + 15:
                time.sleep(0.5)

            failures, checked = [], 0
            for fname, dash in build.load_dashboards().items():
                for title, expr in build.panel_queries(dash):
                    q = build.substitute(expr, model=".*", instance=".*", rate_interval="1m")
                    status, body = _query(prom, q)
                    checked += 1
                    if status != 200 or body.get("status") != "success":
                        failures.append(f"{fname} / {title}: error {body.get('error')!r}\n    {q}")
                    elif not body["data"]["result"]:
                        failures.append(f"{fname} / {title}: no data\n    {q}")
                # the template variables' label_values(...) must list something too
                for v in dash["templating"]["list"]:
                    if v["type"] != "query":
                        continue
                    metric, label = v["definition"].removeprefix("label_values(").rstrip(")").split(", ")
                    r = httpx.get(f"{prom}/api/v1/label/{label}/values", params={"match[]": metric}, timeout=10)
                    if not r.json().get("data"):
                        failures.append(f"{fname} / variable {v['name']}: no values for {v['definition']}")
            assert checked > 20
            # the QA row splits by the reader's four layer/directions, and only QA models feed it
            _, body = _query(prom, 'sum by (layer, model) (skimserve_layer_tokens_total)')
            series = {(r["metric"]["layer"], r["metric"]["model"]) for r in body["data"]["result"]}
            assert {layer for layer, _ in series} == QA_LAYERS
            assert {model for _, model in series} == {"tiny-reader-skim", "tiny-reader"}
            _, body = _query(prom, 'sum by (model) (skimserve_request_duration_seconds_count{endpoint="/qa"})')
            assert {r["metric"]["model"] for r in body["data"]["result"]} >= {"tiny-reader-skim", "tiny-reader"}
            assert not failures, "\n".join(failures)
        finally:
            stop(prom_proc)
            log.close()

"""Every dashboard panel's PromQL returns data from a real Prometheus scraping a real skimserve.

Starts the service (tiny random models) and Debian's `prometheus` on free loopback ports with a temp data
dir and a 1 s scrape interval, sends a bounded burst of requests across thresholds (plus a few bad
requests), waits for two scrapes after the burst, then runs each panel query (Grafana variables
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

from dashboards import build

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "loadtest"))
from _server import free_port, running_server, stop, wait_http  # noqa: E402

PROMETHEUS = shutil.which("prometheus") or next(
    (p for p in ("/usr/bin/prometheus", "/usr/local/bin/prometheus") if Path(p).exists()), None)
pytestmark = pytest.mark.skipif(PROMETHEUS is None,
                                reason="prometheus binary not installed (apt-get install -y prometheus)")

THRESHOLDS = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]
TEXTS = ["the film was not very good but the acting was great .",
         "a boring , awful movie with a bad plot and bad acting .",
         "funny and great ! " * 12]


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
        # a batch, a few errors (so the error panels have real series too) and the other endpoints
        for method, path, params, body in (
                ("POST", "/classify", {"threshold": 0.5, "model": "tiny-skim"}, {"texts": TEXTS}),
                ("POST", "/classify", {"threshold": 0.5, "model": "no-such-model"}, {"text": "x"}),
                ("POST", "/classify", {"threshold": 7, "model": "tiny-skim"}, {"text": "x"}),
                ("GET", "/models", None, None), ("GET", "/healthz", None, None)):
            try:
                c.request(method, path, params=params, json=body)
            except httpx.HTTPError:
                pass


def test_every_panel_query_returns_data(random_models_dir, tmp_path):
    prom_port = free_port()
    with running_server(random_models_dir, log=tmp_path / "server.log") as url:
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
            assert not failures, "\n".join(failures)
        finally:
            stop(prom_proc)
            log.close()

"""The real server: `python -m service serve` under uvicorn on a loopback port, spoken to over HTTP; one
worker and two (Prometheus multiprocess mode); and a bad artifact stopping the startup loudly."""
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import httpx
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's TestClient warns about httpx versions
    from fastapi.testclient import TestClient

from random_model import make_random_classifier

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "loadtest"))
from _server import running_server  # noqa: E402

PROMTOOL = shutil.which("promtool")
TEXT = "the film was not very good but the acting was great ."


def samples(text: str, name: str, **labels) -> list[float]:
    from prometheus_client.parser import text_string_to_metric_families

    return [s.value for fam in text_string_to_metric_families(text) for s in fam.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def promtool_check(text: str) -> None:
    if PROMTOOL is None:
        return
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


def test_real_server_over_http(random_models_dir, tmp_path):
    with running_server(random_models_dir, log=tmp_path / "server.log") as url:
        with httpx.Client(base_url=url, timeout=30) as c:
            assert c.get("/readyz").json() == {"ready": True, "models": ["tiny-lstm", "tiny-skim"]}
            r = c.post("/classify", params={"model": "tiny-skim", "threshold": 0.3, "explain": "true"},
                       json={"text": TEXT})
            assert r.status_code == 200, r.text
            b = r.json()
            assert b["tokens"] == 12 and len(b["explanation"]) == 12 and b["threshold"] == 0.3
            r = c.post("/classify", params={"model": "tiny-skim"}, json={"texts": [TEXT, "good"]})
            assert [x["tokens"] for x in r.json()["results"]] == [12, 1]
            # bad input over a real socket: raw non-UTF-8 bytes, a wrong type, an out-of-range threshold
            r = c.post("/classify", content=b'{"text": "\xff\xfe"}', headers={"content-type": "application/json"})
            assert r.status_code == 400 and r.json()["code"] == "invalid_encoding"
            r = c.post("/classify", content=b"text=good", headers={"content-type": "application/x-www-form-urlencoded"})
            assert r.status_code == 415
            r = c.post("/classify", params={"threshold": "1.01"}, json={"text": TEXT})
            assert r.status_code == 422 and r.json()["code"] == "invalid_threshold"
            assert c.get("/models/tiny-lstm").json()["family"] == "lstm"
            m = c.get("/metrics")
            assert m.status_code == 200
            assert sum(samples(m.text, "skimserve_tokens_total", model="tiny-skim")) == 12 + 13
            promtool_check(m.text)
    log = (tmp_path / "server.log").read_text()
    assert "Application startup complete" in log and "Traceback" not in log


def test_two_workers_share_metrics(random_models_dir, tmp_path):
    """--workers 2: each worker loads the models; /metrics (answered by either) merges both processes."""
    with running_server(random_models_dir, extra=["--workers", "2"], log=tmp_path / "server.log",
                        env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}, timeout=60) as url:
        n = 12
        for _ in range(n):  # separate connections, so the kernel spreads them over the workers
            r = httpx.post(f"{url}/classify", params={"model": "tiny-skim", "threshold": 0.5}, json={"text": TEXT},
                           timeout=30)
            assert r.status_code == 200, r.text
        text = httpx.get(f"{url}/metrics", timeout=30).text
        assert sum(samples(text, "skimserve_tokens_total", model="tiny-skim")) == 12 * n
        assert sum(samples(text, "skimserve_threshold_count", model="tiny-skim")) == n
        assert sum(samples(text, "skimserve_request_duration_seconds_count", endpoint="/classify",
                           status="200")) == n
        info = samples(text, "skimserve_model_info", model="tiny-skim")
        assert info == [1.0]  # one series per model, whichever worker wrote it
        assert samples(text, "skimserve_inflight_requests") == [0.0]
        promtool_check(text)
    assert list((tmp_path / "prom").glob("*.db"))  # the multiprocess files were used


def test_tampered_artifact_stops_startup(tmp_path):
    make_random_classifier(tmp_path / "good", seed=1)
    make_random_classifier(tmp_path / "bad", seed=2)
    with open(tmp_path / "bad" / "weights.npz", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    r = subprocess.run([sys.executable, "-m", "service", "serve", "--models-dir", str(tmp_path), "--port", "1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "checksum mismatch for 'weights.npz'" in r.stderr and str(tmp_path / "bad") in r.stderr


def test_tampered_artifact_stops_app_startup(tmp_path):
    """The same check inside the app (a worker started without the CLI's pre-flight)."""
    from service.api import create_app
    from service.config import Settings
    from service.registry import RegistryError

    make_random_classifier(tmp_path / "bad", seed=2)
    (tmp_path / "bad" / "vocab.txt").write_text("tampered\n")
    with pytest.raises(RegistryError, match="vocab.txt"):
        with TestClient(create_app(Settings(models_dir=str(tmp_path)))):
            pass


@pytest.mark.parametrize("setup,message", [
    (lambda p: None, "holds no model folder"),
    (lambda p: p.rmdir(), "does not exist"),
])
def test_bad_models_dir(tmp_path, setup, message):
    d = tmp_path / "models"
    d.mkdir()
    setup(d)
    r = subprocess.run([sys.executable, "-m", "service", "serve", "--models-dir", str(d)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and message in r.stderr

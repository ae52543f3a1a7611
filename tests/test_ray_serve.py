"""skimserve on Ray Serve (service/ray_app.py, deploy/ray/serve.yaml) on a local Ray cluster on loopback:
deploy, send /classify and /v2 requests through Ray's HTTP proxy, check the answers equal the plain app's
and /metrics counts every replica's work (shared multiprocess files), scale from 1 to 2 replicas (by
config, then by autoscaling on ongoing requests), shut down.
Skips, with the reason, only where Ray is not installed or cannot start here. Ray's footprint is kept
small: 2 CPUs, no dashboard, the smallest object store."""
import concurrent.futures
import os
import sys
import time
import warnings

import httpx
import pytest
import yaml

from conftest import MODELS_DIR, ROOT

ray = pytest.importorskip("ray", reason="ray is not installed (the `ray` extra)")
serve = pytest.importorskip("ray.serve")

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

sys.path.insert(0, str(ROOT / "loadtest"))
from _server import free_port  # noqa: E402

MODELS = ["sst2-skim", "imdb-skim"]
TEXTS = ["the film was not very good but the acting was great .", "a moving , funny film .",
         "a boring , awful movie that never ends ."]
VARYING = {"latency_ms", "per_token_us"}
CONFIG = ROOT / "deploy" / "ray" / "serve.yaml"


def stable(answer: dict) -> dict:
    """An answer without its wall-time fields."""
    if "results" in answer:
        return {**answer, "results": [stable(r) for r in answer["results"]]}
    return {k: v for k, v in answer.items() if k not in VARYING}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray-models")
    for name in MODELS:
        if not (MODELS_DIR / name / "manifest.json").exists():
            pytest.skip(f"shipped model {name} absent")
        (root / name).symlink_to(MODELS_DIR / name)
    return root


def metrics_dir(factory) -> "os.PathLike":
    return factory.getbasetemp() / "ray-metrics"


def tokens_total(metrics_text: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return sum(s.value for fam in text_string_to_metric_families(metrics_text) for s in fam.samples
               if s.name == "skimserve_tokens_total")


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    port = free_port()
    try:
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20, log_to_driver=False,
                 _temp_dir=str(tmp_path_factory.mktemp("ray")), namespace="skimserve-test",
                 runtime_env={"env_vars": {"PYTHONPATH": str(ROOT),
                                           "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir(tmp_path_factory))}})
        serve.start(http_options={"host": "127.0.0.1", "port": port})
    except Exception as exc:  # noqa: BLE001  (whatever stops Ray here is the skip reason)
        ray.shutdown()
        pytest.skip(f"Ray cannot start here: {type(exc).__name__}: {exc}")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def deployment_config() -> dict:
    return yaml.safe_load(CONFIG.read_text())["applications"][0]


def replicas_running() -> int:
    app = serve.status().applications["skimserve"]
    return app.deployments["skimserve"].replica_states.get("RUNNING", 0)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout}s (status: {serve.status().applications})")


def test_config_file_is_a_valid_serve_config():
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(yaml.safe_load(CONFIG.read_text()))
    app = schema.applications[0]
    assert app.import_path == "service.ray_app:build_app"
    auto = app.deployments[0].autoscaling_config
    assert auto["min_replicas"] == 1 and auto["max_replicas"] >= 2 and auto["target_ongoing_requests"] > 0


def test_ray_serve_answers_like_the_plain_app_and_scales(ray_cluster, models_dir, tmp_path_factory):
    from service.api import create_app
    from service.config import Settings
    from service.ray_app import deployment

    args = {"models_dir": str(models_dir), "pool_threads": 1}
    dep = deployment(args).options(num_replicas=1, ray_actor_options={"num_cpus": 0.5})
    serve.run(dep.bind(), name="skimserve", route_prefix="/")
    assert replicas_running() == 1

    requests = [("/classify", {"model": m, "threshold": t}, {"texts": TEXTS}) for m in MODELS for t in (0.3, 1.0)]
    infer = {"inputs": [{"name": "text", "shape": [len(TEXTS)], "datatype": "BYTES", "data": TEXTS}],
             "parameters": {"threshold": 0.3}}
    sent = 0  # tokens of every answer through the proxy: what /metrics must count, over all replicas
    with TestClient(create_app(Settings(**args))) as plain, httpx.Client(base_url=ray_cluster, timeout=60) as c:
        for path, params, body in requests:
            got, want = c.post(path, params=params, json=body), plain.post(path, params=params, json=body)
            assert got.status_code == want.status_code == 200, got.text
            assert stable(got.json()) == stable(want.json()), (path, params)
            sent += sum(r["tokens"] for r in got.json()["results"])
        for model in MODELS:
            got = c.post(f"/v2/models/{model}/infer", json=infer).json()["outputs"]
            want = plain.post(f"/v2/models/{model}/infer", json=infer).json()["outputs"]
            assert [o for o in got if o["name"] not in VARYING] == [o for o in want if o["name"] not in VARYING]
            sent += sum(next(o for o in got if o["name"] == "tokens")["data"])
        bad = c.post("/classify", params={"threshold": 2}, json={"text": "x"})
        assert bad.status_code == 422 and bad.json() == plain.post("/classify", params={"threshold": 2},
                                                                   json={"text": "x"}).json()
        assert tokens_total(c.get("/metrics").text) == sent

        # 1 -> 2 replicas by config: the same application redeployed with num_replicas=2
        serve.run(dep.options(num_replicas=2).bind(), name="skimserve", route_prefix="/")
        wait_for(lambda: replicas_running() == 2, 90, "2 replicas running")

        def writers() -> set[str]:  # processes with counter files: the replicas that answered
            return {f.stem.rsplit("_", 1)[-1] for f in metrics_dir(tmp_path_factory).glob("counter_*.db")}

        for k in range(40):  # separate connections: the proxy spreads them over the replicas
            path, params, body = requests[k % 2]
            got = httpx.post(f"{ray_cluster}{path}", params=params, json=body, timeout=60).json()
            assert stable(got) == stable(plain.post(path, params=params, json=body).json())
            sent += sum(r["tokens"] for r in got["results"])
            if k >= 3 and len(writers()) >= 2:
                break
        assert len(writers()) >= 2, writers()
        # every replica's counters, whichever replica answers the scrape        assert tokens_total(c.get("/metrics").text) == sent

        # 1 -> 2 by autoscaling on ongoing requests (the config file's policy, with short delays)
        auto = {**deployment_config()["deployments"][0]["autoscaling_config"], "max_replicas": 2,
                "target_ongoing_requests": 1, "upscale_delay_s": 0.5, "look_back_period_s": 2, "metrics_interval_s": 0.5,
                "downscale_delay_s": 600}
        serve.run(dep.options(num_replicas="auto", autoscaling_config=auto).bind(), name="skimserve",
                  route_prefix="/")
        wait_for(lambda: replicas_running() == 1, 90, "back to 1 replica (min_replicas)")
        long_text = " ".join(TEXTS * 60)
        stop = time.monotonic() + 60

        def load():
            with httpx.Client(base_url=ray_cluster, timeout=60) as lc:
                while time.monotonic() < stop and replicas_running() < 2:
                    assert lc.post("/classify", params={"model": "imdb-skim", "threshold": 1.0},
                                   json={"texts": [long_text] * 4}).status_code == 200

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            for f in [pool.submit(load) for _ in range(4)]:
                f.result()
        assert replicas_running() == 2, "autoscaling did not add a replica under load"
    serve.delete("skimserve")

"""Throughput of one box against Ray Serve replicas, in one run on one machine, one load generator (wrk):

  python -m benchmarks.scale_out [--duration 5] [--rounds 3] [--connections 16]
      -> benchmarks/results/scale_out.{json,md}

Configurations (all serving the same models dir, uvicorn's access log off, POST /classify):
- plain: `python -m service serve` with one worker (the model pool: one thread per core);
- plain-2w: the same with `--workers 2` (the one-box way to use more cores);
- ray-1, ray-2: service/ray_app.py on a local Ray cluster (2 CPUs, no dashboard), 1 and then 2 replicas
  with deploy/ray/serve.yaml's deployment options (pool_threads=1, num_cpus=1, max_ongoing_requests),
  through Ray's HTTP proxy.
Workloads: short SST-2 sentences on sst2-skim and long IMDb reviews (>= 250 tokens) on imdb-skim (test
splits), one text per request, and the same reviews 8 to a request (imdb-long-x8: the model's time
dominates the request), at the model's default threshold; and the short sentences over 1 connection
(sst2-short@1: one request at a time, so its p50 is a request's latency through each configuration). Every configuration runs once per round, rounds interleaved;
figures are medians over rounds. Ray's replica count is changed by redeploying between runs (not timed).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.http import SETS, Server, free_port, load_texts, wrk

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
RAY_CONFIG = ROOT / "deploy" / "ray" / "serve.yaml"  # the deployment's options (replica count set here)
BATCH = 8
SEQUENTIAL = "sst2-short@1"
CONFIGS = ("plain", "plain-2w", "ray-1", "ray-2")


class RayProxy:
    """The Ray HTTP proxy, asked like a Server (wrk needs .port)."""

    def __init__(self, models_dir: str, tmp: str):
        import ray
        from ray import serve

        self.ray, self.serve, self.port, self.models_dir = ray, serve, free_port(), models_dir
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20, log_to_driver=False,
                 _temp_dir=tmp, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
        serve.start(http_options={"host": "127.0.0.1", "port": self.port})
        self.replicas = 0

    def scale(self, replicas: int) -> None:
        from service.ray_app import deployment

        if replicas == self.replicas:
            return
        import yaml

        options = yaml.safe_load(RAY_CONFIG.read_text())["applications"][0]["deployments"][0]
        options = {k: v for k, v in options.items() if k not in ("name", "autoscaling_config")}
        dep = deployment({"models_dir": self.models_dir, "pool_threads": 1, "log_level": "warning"})
        self.serve.run(dep.options(**options, num_replicas=replicas).bind(), name="skimserve", route_prefix="/")
        status = self.serve.status().applications["skimserve"].deployments["skimserve"].replica_states
        assert status.get("RUNNING") == replicas, status
        self.replicas = replicas

    def stop(self) -> None:
        self.serve.shutdown()
        self.ray.shutdown()


def write_bodies(path: Path, bodies: list[dict], model: str) -> tuple[Path, str, int]:
    path.write_text("".join(json.dumps(b) + "\n" for b in bodies))
    return path, f"/classify?model={model}", len(bodies)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--texts", type=int, default=30)
    ap.add_argument("--data-dir", default=None, help="datasets (default: SKIMSERVE_DATA or ../shared/data)")
    ap.add_argument("--out", default=str(RESULTS / "scale_out"))
    args = ap.parse_args(argv)

    tmp = tempfile.mkdtemp(prefix="scale-out-")
    models_dir = os.path.join(tmp, "models")
    os.makedirs(models_dir)
    for _, model in SETS.values():
        os.symlink(ROOT / "models" / model, os.path.join(models_dir, model))
    bodies = {}
    for name, (dataset, model) in SETS.items():
        texts = load_texts(dataset, args.texts, args.data_dir, long_only=name == "imdb-long")
        lines = [{"text": t} for t in texts]
        if name == "imdb-long":  # and the same reviews 8 to a request: model time dominates the request
            batches = [{"texts": (texts * 8)[i:i + BATCH]} for i in range(0, len(texts) * 8 // BATCH * BATCH, BATCH)]
            bodies["imdb-long-x8"] = write_bodies(Path(tmp) / "imdb-long-x8.jsonl", batches, model)
        bodies[name] = write_bodies(Path(tmp) / f"{name}.jsonl", lines, model)
    bodies[SEQUENTIAL] = bodies["sst2-short"]  # one connection: a request's latency, the hop included

    serve_argv = [sys.executable, "-m", "service", "serve", "--models-dir", models_dir, "--port", "{port}",
                  "--log-level", "warning"]
    ready = dict(path=lambda thr: f"/classify?model={SETS['sst2-short'][1]}",
                 body=lambda text, thr: json.dumps({"text": text}).encode(), ready_text="a fine film")
    servers = {"plain": Server("plain", serve_argv, {}, **ready),
               "plain-2w": Server("plain-2w", serve_argv + ["--workers", "2"],
                                  {"PROMETHEUS_MULTIPROC_DIR": os.path.join(tmp, "prom")}, **ready)}
    proxy = RayProxy(models_dir, os.path.join(tmp, "ray"))
    runs: dict = {c: {w: [] for w in bodies} for c in CONFIGS}
    try:
        for r in range(args.rounds):
            for config in CONFIGS:
                if config.startswith("ray"):
                    proxy.scale(int(config.split("-")[1]))
                target = proxy if config.startswith("ray") else servers[config]
                for workload, (file, path, _) in bodies.items():
                    connections = 1 if workload == SEQUENTIAL else args.connections
                    figures = wrk(target, file, path, connections, args.duration)
                    assert figures["non_2xx"] == 0 and figures["socket_errors"] == 0, (config, workload, figures)
                    runs[config][workload].append(figures)
                    print(f"round {r + 1} {config:8s} {workload:10s} {figures['rps']:8.1f} req/s "
                          f"p50 {figures['p50_us'] / 1000:.1f} ms", flush=True)
    finally:
        proxy.stop()
        for s in servers.values():
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)  # bodies, model links, Ray's session files

    table = {c: {w: {"rps": statistics.median(f["rps"] for f in v),
                     "p50_ms": statistics.median(f["p50_us"] for f in v) / 1000,
                     "p99_ms": statistics.median(f["p99_us"] for f in v) / 1000,
                     "rps_runs": [round(f["rps"], 1) for f in v]}
                 for w, v in runs[c].items()} for c in CONFIGS}
    for c in CONFIGS:
        for w in bodies:
            table[c][w]["vs_plain"] = table[c][w]["rps"] / table["plain"][w]["rps"]
    import ray

    result = {"command": "python -m benchmarks.scale_out " + " ".join(argv if argv is not None else sys.argv[1:]),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                          "ray": ray.__version__},
              "settings": {"duration_s": args.duration, "rounds": args.rounds, "connections": args.connections,
                           "bodies": {w: b[2] for w, b in bodies.items()}},
              "results": table}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    s = result["settings"]
    lines = [f"# Scale-out: plain server vs Ray Serve replicas ({result['date']})", "",
             f"`{result['command']}` on {result['machine']['cpus']} CPUs ({result['machine']['platform']}, "
             f"Ray {result['machine']['ray']}); wrk, {s['connections']} connections, {s['duration_s']:g} s per run, "
             f"median of {s['rounds']} interleaved rounds; POST /classify at the default threshold (x8: 8 texts a request; @1: 1 connection).",
             "", "| configuration | workload | req/s | vs plain | p50 ms | p99 ms | req/s per round |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for c, by in result["results"].items():
        for w, f in by.items():
            lines.append(f"| {c} | {w} | {f['rps']:.0f} | {f['vs_plain']:.2f}x | {f['p50_ms']:.1f} | "
                         f"{f['p99_ms']:.1f} | {', '.join(map(str, f['rps_runs']))} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

"""A minimal stand-in for the skimserve API, used ONLY when `python -m service serve` is not available
(the real API landed after the first CPU-vs-GPU run). It serves the same models through the same engine
(service.families.build_model with $SKIMSERVE_KERNEL) and exposes the fixed metric names of
docs/TEAM_NOTES.md, so the load-test scenarios and dashboards run unchanged. Not a locustfile (leading '_').

  SKIMSERVE_SERVE_CMD="{python} loadtest/_standin_server.py --models-dir {models_dir} --port {port}"
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    import uvicorn
    from fastapi import FastAPI, HTTPException, Request, Response
    from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, Info, generate_latest

    from service.artifacts import load_artifact
    from service.families import build_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--models-dir", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--kernel", default=os.environ.get("SKIMSERVE_KERNEL", "reference"))
    a = ap.parse_args()
    models = {p.name: build_model(load_artifact(p), a.kernel)
              for p in sorted(Path(a.models_dir).iterdir()) if (p / "manifest.json").exists()}
    rd = Histogram("skimserve_request_duration_seconds", "request", ["endpoint", "model", "status"],
                   buckets=[1e-4 * 2 ** i for i in range(18)])
    tl = Histogram("skimserve_token_latency_seconds", "per token", ["model"], buckets=[1e-6 * 2 ** i for i in range(20)])
    sr = Histogram("skimserve_skim_rate", "skim rate", ["model"], buckets=[i / 20 for i in range(1, 21)])
    tt = Counter("skimserve_tokens_total", "tokens", ["model", "decision"])
    ft = Counter("skimserve_flops_total", "flops", ["model"])
    fr = Histogram("skimserve_flop_reduction", "flop reduction", ["model"], buckets=[1, 1.25, 1.5, 2, 3, 4, 6, 8])
    th = Histogram("skimserve_threshold", "threshold", ["model"], buckets=[i / 10 for i in range(11)])
    inflight = Gauge("skimserve_inflight_requests", "in flight")
    Gauge("skimserve_queue_depth", "queue depth")
    info = Info("skimserve_model", "model info", ["model"])
    for n, m in models.items():
        info.labels(model=n).info({"version": m.version, "family": m.manifest["family"], "task": m.task,
                                   "kernel": m.kernel_name})
    app = FastAPI()

    @app.post("/classify")
    def classify(body: dict, threshold: float | None = None, model: str | None = None):
        t0 = time.perf_counter()
        name = model or sorted(models)[0]
        if name not in models:
            rd.labels("/classify", name, "404").observe(time.perf_counter() - t0)
            raise HTTPException(404, f"unknown model {name}")
        m = models[name]
        thr = m.default_threshold if threshold is None else threshold
        texts = body.get("texts") or [body.get("text", "")]
        inflight.inc()
        try:
            out = []
            for text in texts:
                r = m.classify(text, thr)
                c = r.cost
                tl.labels(name).observe(c.latency_ms / 1000 / max(c.tokens, 1))
                sr.labels(name).observe(c.skim_rate)
                tt.labels(name, "read").inc(c.tokens - c.skimmed)
                tt.labels(name, "skim").inc(c.skimmed)
                ft.labels(name).inc(c.flops)
                fr.labels(name).observe(c.flop_reduction)
                th.labels(name).observe(thr)
                out.append({"label": r.label, "probabilities": r.probabilities, "cost": c.as_dict()})
        finally:
            inflight.dec()
        rd.labels("/classify", name, "200").observe(time.perf_counter() - t0)
        return {"model": name, "kernel": m.kernel_name, "threshold": thr, "results": out}

    @app.get("/models")
    def list_models():
        return {"models": [m.describe() for m in models.values()]}

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/metrics")
    def metrics():
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    uvicorn.run(app, host=a.host, port=a.port, log_level="warning")


if __name__ == "__main__":
    main()

"""Server-reported cost per (task, threshold), collected from response bodies. Kept apart from the locustfile
so run_headless.py can merge the samples of several Locust processes without importing Locust (gevent)."""
from __future__ import annotations

import csv
import json
import threading
from collections import defaultdict
from pathlib import Path


def find(obj, key):
    """First value of `key` anywhere in a JSON response (tolerant of the exact response shape)."""
    if isinstance(obj, dict):
        if key in obj and not isinstance(obj[key], (dict, list)):
            return obj[key]
        for v in obj.values():
            r = find(v, key)
            if r is not None:
                return r
    elif isinstance(obj, list):
        for v in obj:
            r = find(v, key)
            if r is not None:
                return r
    return None


def layer_skim_rates(body) -> dict[str, float]:
    """{layer: skim_rate} of a /qa response (per_layer of the answer; a batch: of its first result)."""
    if isinstance(body, dict) and "results" in body and body["results"]:
        body = body["results"][0]
    layers = body.get("per_layer") if isinstance(body, dict) else None
    out = {}
    for layer in layers or []:
        if isinstance(layer, dict) and isinstance(layer.get("skim_rate"), (int, float)) and layer.get("layer"):
            out[str(layer["layer"])] = float(layer["skim_rate"])
    return out


class SkimLog:
    """Server-reported cost per (task, threshold), collected from response bodies."""

    FIELDS = ("skim_rate", "flop_reduction", "tokens", "per_token_us", "latency_ms")

    def __init__(self):
        self.lock = threading.Lock()
        self.rows: dict[tuple[str, str, float], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))

    def add(self, task_name, model, threshold, body):
        vals = {k: find(body, k) for k in self.FIELDS}
        layers = layer_skim_rates(body)
        with self.lock:
            row = self.rows[(task_name, model or "", threshold)]
            for k, v in vals.items():
                if isinstance(v, (int, float)):
                    row[k].append(float(v))
            for name, v in layers.items():
                row["layer:" + name].append(v)

    def dump_raw(self, path: str | Path):
        """The raw samples, for a parent to merge (Locust --processes: every worker holds its own SkimLog)."""
        with self.lock:
            rows = [[list(key), {k: v for k, v in row.items()}] for key, row in self.rows.items()]
        Path(path).write_text(json.dumps(rows), encoding="utf-8")

    def merge_raw(self, path: str | Path):
        for key, row in json.loads(Path(path).read_text(encoding="utf-8")):
            t, m, thr = key
            for k, v in row.items():
                self.rows[(t, m, float(thr))][k].extend(v)

    def write(self, path: str | Path):
        import numpy as np

        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["task", "model", "threshold", "responses", "skim_rate_mean", "flop_reduction_mean",
                        "tokens_mean", "per_token_us_p50", "per_token_us_p95", "per_token_us_p99",
                        "model_ms_p50", "model_ms_p95", "layer_skim_rates"])
            for (t, m, thr), row in sorted(self.rows.items()):
                def stat(k, fn):
                    return f"{fn(np.asarray(row[k])):.6g}" if row.get(k) else ""
                w.writerow([t, m, thr, len(row.get("tokens", row.get("skim_rate", []))),
                            stat("skim_rate", np.mean), stat("flop_reduction", np.mean), stat("tokens", np.mean),
                            stat("per_token_us", lambda a: np.percentile(a, 50)),
                            stat("per_token_us", lambda a: np.percentile(a, 95)),
                            stat("per_token_us", lambda a: np.percentile(a, 99)),
                            stat("latency_ms", lambda a: np.percentile(a, 50)),
                            stat("latency_ms", lambda a: np.percentile(a, 95)),
                            " ".join(f"{k.removeprefix('layer:')}={np.mean(v):.4g}"
                                     for k, v in row.items() if k.startswith("layer:") and v)])

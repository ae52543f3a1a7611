"""What one request's Prometheus metrics cost, in one process and in multiprocess mode (several workers):

  python -m benchmarks.metrics_cost [--n 20000] [--rounds 5]  -> benchmarks/results/metrics_cost.{json,md}

A request records: the request duration (service/api/app.py), the threshold and its source, and per answered item the
token, FLOP, skim-rate, FLOP-reduction and per-token-latency series (service/metrics.py), plus, for a
model of several layers (QA: 2 layers x 2 directions), the per-layer series. Each mode runs in its own
process (multiprocess mode must be chosen before prometheus_client is imported); medians over rounds, in
microseconds per request. `labels()` lookups (what the code did before it kept each model's children) are
measured beside them.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, statistics, sys, time
from service import metrics

class Cost:
    def __init__(self, layers):
        self.tokens, self.skimmed, self.flops, self.skim_rate = 280, 200, 1_000_000, 0.71
        self.flop_reduction, self.latency_ms = 2.1, 0.3
        self.per_layer = [{"layer": f"l{i // 2}.{'fw' if i % 2 == 0 else 'bw'}", "tokens": 70, "skimmed": 50,
                           "skim_rate": 0.71} for i in range(layers)]

n, rounds = int(sys.argv[1]), int(sys.argv[2])
cases = {"classify (1 layer)": Cost(1), "qa (2 layers x 2 directions)": Cost(4)}

def request(cost):
    metrics.record_threshold("m", 0.3)
    metrics.record_cost("m", cost)
    metrics.record_threshold_source("m", "request")
    metrics.observe_request("/classify", "m", "200", 0.001)

def labels_lookup(_cost):  # the old way, per request: one labels() per series
    metrics.TOKENS.labels(model="m", decision="read").inc(80)
    metrics.TOKENS.labels(model="m", decision="skim").inc(200)
    metrics.FLOPS.labels(model="m").inc(1_000_000)
    metrics.SKIM_RATE.labels(model="m").observe(0.71)
    metrics.FLOP_REDUCTION.labels(model="m").observe(2.1)
    metrics.TOKEN_LATENCY.labels(model="m").observe(1e-6)
    metrics.THRESHOLD.labels(model="m").observe(0.3)
    metrics.THRESHOLD_SOURCE.labels(model="m", source="request").inc()
    metrics.REQUEST_DURATION.labels(endpoint="/classify", model="m", status="200").observe(0.001)

out = {}
for name, fn, cost in [*((k, request, c) for k, c in cases.items()), ("classify, labels() per series", labels_lookup, cases["classify (1 layer)"])]:
    fn(cost)
    per_round = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            fn(cost)
        per_round.append((time.perf_counter() - t0) / n * 1e6)
    out[name] = round(statistics.median(per_round), 2)
print(json.dumps(out))
"""


def run_mode(multiprocess: bool, n: int, rounds: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["PYTHONPATH"] = str(ROOT)
    with tempfile.TemporaryDirectory(prefix="skimserve-metrics-") as tmp:
        if multiprocess:
            env["PROMETHEUS_MULTIPROC_DIR"] = tmp
        out = subprocess.run([sys.executable, "-c", CHILD, str(n), str(rounds)], env=env, cwd=ROOT,
                             capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=20000, help="requests per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    from training.evaluate import cpu_name

    modes = {"one process": run_mode(False, args.n, args.rounds),
             "multiprocess (PROMETHEUS_MULTIPROC_DIR)": run_mode(True, args.n, args.rounds)}
    result = {"date": datetime.date.today().isoformat(), "cpu": cpu_name(), "n": args.n, "rounds": args.rounds,
              "us_per_request": modes,
              "command": "python -m benchmarks.metrics_cost " + " ".join(argv if argv is not None else sys.argv[1:])}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics_cost.json").write_text(json.dumps(result, indent=1) + "\n")
    cases = list(next(iter(modes.values())))
    lines = ["# Request metrics: cost per request (µs)", "",
             f"`{result['command']}` on {result['cpu']}, {result['date']}: medians over {args.rounds} rounds of "
             f"{args.n} requests.", "", "| case | " + " | ".join(modes) + " |", "|---|" + "---|" * len(modes)]
    lines += [f"| {c} | " + " | ".join(str(modes[m][c]) for m in modes) + " |" for c in cases]
    (out / "metrics_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

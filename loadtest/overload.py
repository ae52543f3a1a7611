"""Overload: the latency-objective mode off and on, at 1x, 1.5x and 2x the server's measured capacity.

  python loadtest/overload.py [--objective-ms 20] [--min-threshold 0.1] [--factors 1,1.5,2] [--driver-check 0.6]
      -> loadtest/results/overload/{overload.json, REPORT.md, latency_vs_load.png, thresholds_over_time.png}

Requests: --batch labelled IMDb test reviews or SST-2 test sentences, half each, to POST /classify with no
threshold (a batch, so that the model's work, the part a threshold changes, is most of a request's cost).
The server: one worker with one model thread, pinned to CPU 0 (--server-cpus), the load generator on CPU 1
(--client-cpus); `--inline-max-bytes 65536` so that a batch runs on the event loop as a single text does:
with one model thread on one core the pool hop adds only thread hand-offs, and they set the tail (docs/budget.md).

1. Throughput: one server, objective off, a closed loop (--capacity-connections back-to-back connections)
   for --capacity-time seconds at the default thresholds, then with the floor threshold sent explicitly
   (what the mode can at most reach).
2. Capacity (--capacity objective, the default): on the same server, objective off, open-loop load at the
   --search fractions of that throughput in turn, --search-time seconds each; the capacity is the last
   rate before the first one that misses the objective (p99 over it, or any 503). A saturated server's
   queue alone sets its p99, so the throughput is no rate a latency objective holds at
   (--capacity saturation multiplies the throughput instead).
3. For each factor, objective off then on (a fresh server each run, the same settings otherwise): open-loop
   load at factor x capacity for --run-time seconds. Every request is logged (status, client latency from
   when it was due, the applied threshold and threshold_source, whether the labels were right).
4. One table: achieved rate, p50/p99 client latency (answered requests; the first --warmup seconds
   dropped), 503 share and other 5xx, the driver's own lag, share of load-lowered requests, accuracy
   measured on the labelled texts sent, and the accuracy expected from the applied thresholds on each
   model's calibrated curve (dev) against the same texts at the default: the accuracy given up.

The load generator (--driver): loadtest/openloop.py by default (why not Locust: its docstring; --driver-check
F runs both at F x throughput against one server and puts them side by side in the report), or Locust's
OverloadUser (--driver locust; constant throughput per user, --user-rate).

Safe to import (Locust imports every .py under loadtest/). Loopback only.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from loadtest._server import running_server  # noqa: E402
from loadtest.run_headless import hardware  # noqa: E402

MODELS = {"long": "imdb-skim", "short": "sst2-skim"}


def pinned(cpus: str | None) -> list[str]:
    """`taskset -c CPUS` (Linux) so the server and the load generator do not take each other's cores."""
    return ["taskset", "-c", cpus] if cpus and shutil.which("taskset") else []


def locust(url: str, prefix: Path, users: int, seconds: float, rate: float, extra_env: dict | None = None,
           cpus: str | None = None, batch: int = 1) -> None:
    env = dict(os.environ, SKIMSERVE_BATCH=str(batch), SKIMSERVE_TASKS="overload", SKIMSERVE_LONG_MODEL=MODELS["long"],
               SKIMSERVE_SHORT_MODEL=MODELS["short"], SKIMSERVE_USER_RATE=f"{rate:.6g}", SKIMSERVE_TEXTS="1000",
               PYTHONPATH=str(ROOT), **(extra_env or {}))
    cmd = [*pinned(cpus), sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"), "--headless", "--host", url,
           "--users", str(users), "--spawn-rate", str(users), "--run-time", f"{int(seconds)}s",
           "--stop-timeout", "5", "--csv", str(prefix), "--only-summary", "--loglevel", "ERROR",
           "--exit-code-on-error", "0"]
    subprocess.run(cmd, env=env, timeout=seconds + 120, check=True, stdout=subprocess.DEVNULL)


def read_requests(prefix: Path) -> list[dict]:
    path = Path(f"{prefix}_requests.csv")
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def curve_accuracy(model_dir: Path) -> dict[float, float]:
    cal = json.loads((model_dir / "manifest.json").read_text()).get("calibration") or {}
    return {round(float(r["threshold"]), 4): float(r["accuracy"]) for r in cal.get("curve", [])}


def expected_accuracy(curve: dict[float, float], threshold: float) -> float:
    """The dev accuracy at a threshold, linear between the curve's grid points."""
    pts = sorted(curve.items())
    for (t0, a0), (t1, a1) in zip(pts, pts[1:]):
        if t0 <= threshold <= t1:
            return a0 + (a1 - a0) * ((threshold - t0) / (t1 - t0) if t1 > t0 else 0.0)
    return pts[0][1] if threshold < pts[0][0] else pts[-1][1]


def summarise(rows: list[dict], seconds: float, warmup: float, curves: dict, defaults: dict) -> dict:
    if not rows:
        return {"requests": 0}
    t_start = min(float(r["t"]) for r in rows)
    kept = [r for r in rows if float(r["t"]) >= t_start + warmup]
    ok = [r for r in kept if r["status"] == "200"]
    lat = [float(r["latency_ms"]) for r in ok]
    n = len(kept)
    s503 = sum(r["status"] == "503" for r in kept)
    other5xx = sum(r["status"].startswith("5") and r["status"] != "503" for r in kept)
    failed = sum(not r["status"].startswith(("2", "5")) for r in kept)  # 0 = connection error, 4xx
    span = max(1e-9, seconds - warmup)
    exp, exp_default = [], []
    for r in ok:
        curve = curves[r["kind"]]
        exp.append(expected_accuracy(curve, float(r["threshold"])))
        exp_default.append(expected_accuracy(curve, defaults[r["kind"]]))
    by_kind = {}
    for kind in ("long", "short"):
        k_ok = [r for r in ok if r["kind"] == kind]
        by_kind[kind] = {"answered": len(k_ok),
                         "accuracy": (sum(int(r["correct"]) for r in k_ok) / max(1, sum(int(r["texts"]) for r in k_ok))
                                      if k_ok else None),
                         "p99_ms": percentile([float(r["latency_ms"]) for r in k_ok], 0.99)}
    thresholds = {}
    for r in ok:
        key = f"{r['kind']} {float(r['threshold']):g}"
        thresholds[key] = thresholds.get(key, 0) + 1
    return {"requests": n, "answered": len(ok), "rate": len(ok) / span, "offered_rate": n / span,
            "p50_ms": percentile(lat, 0.5), "p99_ms": percentile(lat, 0.99), "max_ms": max(lat) if lat else None,
            "share_503": s503 / n if n else 0.0, "other_5xx": other5xx, "failed_other": failed,
            "share_load": sum(r["source"] == "load" for r in ok) / len(ok) if ok else 0.0,
            "accuracy": sum(int(r["correct"]) for r in ok) / max(1, sum(int(r["texts"]) for r in ok)) if ok else None,
            "texts_answered": sum(int(r["texts"]) for r in ok),
            "expected_accuracy": sum(exp) / len(exp) if exp else None,
            "expected_accuracy_default": sum(exp_default) / len(exp_default) if exp_default else None,
            "by_kind": by_kind, "thresholds": dict(sorted(thresholds.items())),
            # the open-loop driver's own delay (due -> written): small means the figures are the server's
            "driver_lag_p99_ms": percentile([float(r["lag_ms"]) for r in kept if r.get("lag_ms") not in (None, "")],
                                            0.99)}


def scrape(url: str) -> tuple[dict, dict[float, float]]:
    """From the server's /metrics: threshold-source counts, and the /classify request-duration histogram
    (cumulative counts by bucket upper bound, seconds; every model and status)."""
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=10).text
    sources, buckets = {}, {}
    for line in text.splitlines():
        if line.startswith("skimserve_threshold_source_total{"):
            labels, value = line.rsplit(" ", 1)
            sources[labels.removeprefix("skimserve_threshold_source_total")] = float(value)
        elif line.startswith("skimserve_request_duration_seconds_bucket{") and 'endpoint="/classify"' in line:
            labels, value = line.rsplit(" ", 1)
            le = labels.split('le="', 1)[1].split('"', 1)[0]
            bound = float("inf") if le == "+Inf" else float(le)
            buckets[bound] = buckets.get(bound, 0.0) + float(value)
    return sources, buckets


def bucket_quantile(buckets: dict[float, float], q: float) -> float | None:
    """The upper bound (ms) of the histogram bucket holding quantile q (server side: from body read to
    answer sent; excludes time in the socket before the server reads the request)."""
    if not buckets:
        return None
    total = buckets[max(buckets)]
    for bound in sorted(buckets):
        if buckets[bound] >= q * total:
            return 1000 * bound
    return None


class Driver:
    """Sends one run's load and leaves its rows in PREFIX_requests.csv: the open-loop driver
    (loadtest/openloop.py, in this process, pinned to --client-cpus) or Locust's OverloadUser (a subprocess)."""

    def __init__(self, args, models_dir: Path):
        self.args, self.kind = args, args.driver
        self.requests = {}
        if self.kind == "openloop":
            from loadtest import openloop
            from loadtest.texts import load_labelled

            texts = {k: load_labelled(k, 1000) for k in MODELS}
            self.openloop = openloop
            for key, thr in (("default", None), ("floor", f"{args.min_threshold:g}")):
                self.requests[key] = openloop.build_requests(texts, MODELS, batch=args.batch, threshold=thr)
            self.labels = None

    def run(self, url: str, prefix: Path, rate: float, seconds: float, fixed: str = "default",
            kind: str | None = None) -> list[dict]:
        """rate 0: closed loop (--capacity-connections, or --capacity-users for Locust)."""
        a = self.args
        if (kind or self.kind) == "locust":
            env = {"SKIMSERVE_OVERLOAD_THRESHOLD": f"{a.min_threshold:g}"} if fixed == "floor" else {}
            users = a.capacity_users if rate <= 0 else max(1, math.ceil(rate / a.user_rate))
            locust(url, prefix, users, seconds, rate / users if rate > 0 else 0.0, env, a.client_cpus, a.batch)
            return read_requests(prefix)
        if self.labels is None:
            self.labels = self.openloop.label_names_of(url, MODELS.values())
        rows = self.openloop.run(url, self.requests[fixed], rate, seconds,
                                 a.capacity_connections if rate <= 0 else a.connections, label_names=self.labels,
                                 timeout=a.client_timeout)
        self.openloop.write_rows(rows, f"{prefix}_requests.csv")
        return read_requests(prefix)


def holds(s: dict, objective_ms: float) -> bool:
    """Within the objective: p99 <= objective, every request answered, no 503 or other error."""
    return (s.get("answered", 0) > 0 and s["p99_ms"] <= objective_ms and s["share_503"] == 0
            and s["other_5xx"] == 0 and s["failed_other"] == 0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models-dir", default=str(ROOT / "models"))
    p.add_argument("--objective-ms", type=float, default=20.0)
    p.add_argument("--min-threshold", type=float, default=0.1)
    p.add_argument("--factors", default="1,1.5,2")
    p.add_argument("--run-time", type=float, default=30.0)
    p.add_argument("--warmup", type=float, default=3.0, help="seconds dropped at the start of each run")
    p.add_argument("--driver", choices=("openloop", "locust"), default="openloop",
                   help="what sends the load: loadtest/openloop.py (open loop, default) or Locust's OverloadUser")
    p.add_argument("--capacity", choices=("objective", "saturation"), default="objective",
                   help="what the factors multiply: the highest rate held within the objective with the mode "
                        "off (default), or the closed-loop throughput at the default thresholds")
    p.add_argument("--search", default="0.5,0.6,0.65,0.7,0.75,0.8,0.85,0.9",
                   help="fractions of the saturation throughput tried, in order, objective off, for the capacity "
                        "within the objective (the last one before the first that misses)")
    p.add_argument("--search-time", type=float, default=None,
                   help="seconds of each search run, each on a fresh server (default: --run-time, so that a "
                        "rate found to hold is held as the 1x run below holds it)")
    p.add_argument("--capacity-time", type=float, default=15.0, help="seconds of each closed-loop throughput run")
    p.add_argument("--capacity-connections", type=int, default=16, help="open-loop driver's closed loop")
    p.add_argument("--connections", type=int, default=256, help="open-loop driver's keep-alive connections")
    p.add_argument("--client-timeout", type=float, default=10.0,
                   help="open-loop driver: a request unanswered this many s after it was due is given up")
    p.add_argument("--capacity-users", type=int, default=32, help="Locust's closed loop")
    p.add_argument("--user-rate", type=float, default=2.0, help="requests/s per Locust user")
    p.add_argument("--driver-check", type=float, default=0.0,
                   help="also drive the server (objective off) at this fraction of the saturation throughput "
                        "with both drivers in turn, for the report (0: skip)")
    p.add_argument("--batch", type=int, default=4, help="texts per request (one kind per request)")
    p.add_argument("--server-args", default="--workers 1 --pool-threads 1 --inline-max-bytes 65536",
                   help="extra `skimserve serve` flags, both modes")
    p.add_argument("--server-cpus", default="0" if (os.cpu_count() or 1) > 1 else None,
                   help="taskset CPU list of the server (default: CPU 0 on a multi-core machine)")
    p.add_argument("--client-cpus", "--locust-cpus", default="1" if (os.cpu_count() or 1) > 1 else None,
                   help="CPU list of the load generator (default: CPU 1)")
    p.add_argument("--out", default=str(HERE / "results" / "overload"))
    p.add_argument("--report-only", action="store_true",
                   help="rewrite REPORT.md and the plots from --out's overload.json and runs/, running nothing")
    args = p.parse_args(argv)
    if args.report_only:
        out = Path(args.out)
        rec = json.loads((out / "overload.json").read_text())
        (out / "REPORT.md").write_text(report(rec))
        plots(rec, out, out / "runs")
        return 0
    if pinned(args.server_cpus):  # loadtest/_server.py's command template
        os.environ["SKIMSERVE_SERVE_CMD"] = (f"taskset -c {args.server_cpus} {{python}} -m service serve "
                                             "--models-dir {models_dir} --host 127.0.0.1 --port {port}")
    if args.driver == "openloop" and args.client_cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in args.client_cpus.split(",")})  # the server is pinned apart
    out = Path(args.out)
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    models_dir = Path(args.models_dir)
    curves = {k: curve_accuracy(models_dir / m) for k, m in MODELS.items()}
    defaults = {k: float(json.loads((models_dir / m / "manifest.json").read_text())["default_threshold"])
                for k, m in MODELS.items()}
    base = args.server_args.split() + ["--log-level", "warning"]
    objective = ["--latency-objective-ms", f"{args.objective_ms:g}", "--min-threshold", f"{args.min_threshold:g}"]
    record = {"command": "python loadtest/overload.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "hardware": hardware(), "load_average_before": os.getloadavg(), "objective_ms": args.objective_ms,
              "min_threshold": args.min_threshold, "models": MODELS, "defaults": defaults, "driver": args.driver,
              "capacity_basis": args.capacity, "server_args": args.server_args, "server_cpus": args.server_cpus,
              "client_cpus": args.client_cpus, "batch": args.batch, "run_time_s": args.run_time,
              "warmup_s": args.warmup, "search": [], "driver_check": [], "runs": []}
    driver = Driver(args, models_dir)
    search_time = args.search_time or args.run_time
    record["search_time_s"] = search_time

    def summary(rows, seconds):
        return summarise(rows, seconds, min(args.warmup, seconds / 3), curves, defaults)

    with running_server(models_dir, extra=base, timeout=120) as url:
        sat = {}
        for key in ("default", "floor"):
            rows = driver.run(url, runs_dir / f"capacity-{key}", 0.0, args.capacity_time, fixed=key)
            sat[key] = summary(rows, args.capacity_time)
            print(f"throughput, closed loop ({key} thresholds): {sat[key]['rate']:.1f} req/s, "
                  f"p99 {sat[key]['p99_ms']:.1f} ms", flush=True)
        record["saturation"] = sat
        for drv in (("locust", "openloop") if args.driver_check > 0 else ()):
            rate = args.driver_check * sat["default"]["rate"]
            before = scrape(url)[1]
            s = summary(driver.run(url, runs_dir / f"check-{drv}", rate, search_time, kind=drv), search_time)
            after = scrape(url)[1]
            server = {b: after[b] - before.get(b, 0.0) for b in after}
            record["driver_check"].append({"driver": drv, "target_rate": rate, **s,
                                           "server_p99_bucket_ms": bucket_quantile(server, 0.99)})
            print(f"driver check {drv}: p50 {s.get('p50_ms') or 0:.1f} ms, p99 {s.get('p99_ms') or 0:.1f} ms", flush=True)
    capacity = sat["default"]["rate"]
    if args.capacity == "objective":
        capacity = None
        for frac in [float(f) for f in args.search.split(",")]:
            rate = frac * sat["default"]["rate"]
            with running_server(models_dir, extra=base, timeout=120) as url:  # fresh, as each run below
                s = summary(driver.run(url, runs_dir / f"search-{frac:g}", rate, search_time), search_time)
            ok = holds(s, args.objective_ms)
            record["search"].append({"fraction": frac, "target_rate": rate, "holds": ok, **s})
            print(f"search {frac:g} x throughput = {rate:.0f} req/s: p99 {s.get('p99_ms') or float('nan'):.1f} ms,"
                  f" 503 {100 * s.get('share_503', 0):.2f}% -> {'holds' if ok else 'misses'}", flush=True)
            if not ok:
                break
            capacity = rate
        if capacity is None:  # not even the first rate held: the factors multiply it anyway (said so)
            capacity = record["search"][0]["target_rate"]
            record["capacity_note"] = "no searched rate held the objective; factors multiply the lowest"
    record["capacity"] = {"rate": capacity, "basis": args.capacity,
                          "floor_gain": sat["floor"]["rate"] / max(1e-9, sat["default"]["rate"])}

    for factor in [float(f) for f in args.factors.split(",")]:
        target = factor * capacity
        for mode in ("off", "on"):
            name = f"x{factor:g}-{mode}"
            prefix = runs_dir / name
            with running_server(models_dir, extra=base + (objective if mode == "on" else []), timeout=120) as url:
                rows = driver.run(url, prefix, target, args.run_time)
                sources, buckets = scrape(url)
            s = summary(rows, args.run_time)
            record["runs"].append({"name": name, "factor": factor, "mode": mode, "target_rate": target,
                                   "metrics_threshold_source": sources,
                                   "server_p99_bucket_ms": bucket_quantile(buckets, 0.99), **s})
            print(f"{name}: {s.get('rate', 0):.1f}/{target:.1f} req/s, p99 {s.get('p99_ms') or float('nan'):.1f} ms, "
                  f"503 {100 * s.get('share_503', 0):.2f}%, load-lowered {100 * s.get('share_load', 0):.1f}%", flush=True)
    record["load_average_after"] = os.getloadavg()
    (out / "overload.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "REPORT.md").write_text(report(record))
    plots(record, out, runs_dir)
    print((out / "REPORT.md").read_text())
    return 0


def fmt(v, spec=".1f", scale=1.0) -> str:
    return "-" if v is None else format(scale * v, spec)


def report(rec: dict) -> str:
    sat, cap = rec["saturation"], rec["capacity"]
    driver = ("the open-loop driver (loadtest/openloop.py: Poisson arrivals, each request timed from when it was "
              "due)" if rec["driver"] == "openloop" else "Locust (`OverloadUser`, one process)")
    basis = ("the highest rate the server held within the objective with the mode off (p99 within "
             f"{rec['objective_ms']:g} ms, no 503; searched below)" if cap["basis"] == "objective"
             else "the closed-loop throughput at the default thresholds")
    lines = [f"# Overload: latency objective {rec['objective_ms']:g} ms off and on", "",
             f"`{rec['command']}` ({rec['date']}; {rec['hardware'].get('cpu', '')}, {rec['hardware'].get('cpus')} "
             f"cores, load average {rec['load_average_before'][0]:.1f} before, {rec['load_average_after'][0]:.1f} "
             f"after). Server `skimserve serve {rec['server_args']}` on CPU {rec['server_cpus']}, {driver} on "
             f"CPU {rec['client_cpus']}. Requests: batches of {rec['batch']} IMDb test reviews to `imdb-skim` or of "
             f"{rec['batch']} SST-2 test sentences to `sst2-skim`, half each, no threshold sent; objective mode: "
             f"`--latency-objective-ms {rec['objective_ms']:g} --min-threshold {rec['min_threshold']:g}`. Each run "
             f"{rec['run_time_s']:g} s on a fresh server, the first {rec['warmup_s']:g} s dropped; latency = client "
             "time of answered requests.", "",
             f"**Capacity: {cap['rate']:.1f} req/s**, {basis}. Throughput (closed loop, objective off): "
             f"{sat['default']['rate']:.1f} req/s at the default thresholds (p99 {fmt(sat['default']['p99_ms'])} ms), "
             f"{sat['floor']['rate']:.1f} req/s with every request at the floor threshold {rec['min_threshold']:g} "
             f"(p99 {fmt(sat['floor']['p99_ms'])} ms): the floor raises throughput {cap['floor_gain']:.2f}x, so 2x "
             f"capacity is {2 * cap['rate'] / max(1e-9, sat['floor']['rate']):.2f} of the floor's throughput."]
    if rec.get("capacity_note"):
        lines += ["", f"Note: {rec['capacity_note']}."]
    if rec.get("search"):
        lines += ["", f"Capacity search (objective off, a fresh server per rate, {rec.get('search_time_s', 0):g} s "
                  "each, the first seconds dropped as in the runs below):", "",
                  "| fraction of throughput | offered req/s | answered req/s | p50 ms | p99 ms | 503 % | holds |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for r in rec["search"]:
            lines.append(f"| {r['fraction']:g} | {fmt(r.get('offered_rate'))} | {fmt(r.get('rate'))} | "
                         f"{fmt(r.get('p50_ms'), '.2f')} | {fmt(r.get('p99_ms'), '.2f')} | "
                         f"{fmt(r.get('share_503'), '.2f', 100)} | {'yes' if r['holds'] else 'no'} |")
    if rec.get("driver_check"):
        lines += ["", "The load generators side by side (objective off, the same server, the same offered rate, one "
                  "after the other):", "",
                  "| driver | offered req/s | answered req/s | client p50 ms | client p99 ms | server p99 ≤ ms |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for r in rec["driver_check"]:
            lines.append(f"| {r['driver']} | {fmt(r.get('offered_rate'))} | {fmt(r.get('rate'))} | "
                         f"{fmt(r.get('p50_ms'), '.2f')} | {fmt(r.get('p99_ms'), '.2f')} | "
                         f"{fmt(r.get('server_p99_bucket_ms'), 'g')} |")
    lines += ["", "| load | objective | offered req/s | answered req/s | p50 ms | p99 ms | within objective | 503 % | "
              "other 5xx | given up or failed | server p99 ≤ ms | driver lag p99 ms | load-lowered % | accuracy % (measured) | "
              "accuracy % expected (curve) | at default (curve) | given up (curve), points |",
              "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
              "| ---: | ---: |"]
    for r in rec["runs"]:
        within = r.get("p99_ms") is not None and r["p99_ms"] <= rec["objective_ms"]
        given = (None if r.get("expected_accuracy") is None else
                 100 * (r["expected_accuracy_default"] - r["expected_accuracy"]))
        lines.append(
            f"| {r['factor']:g}x | {r['mode']} | {fmt(r.get('offered_rate'))} | {fmt(r.get('rate'))} | "
            f"{fmt(r.get('p50_ms'), '.2f')} | {fmt(r.get('p99_ms'), '.2f')} | {'yes' if within else 'no'} | "
            f"{fmt(r.get('share_503'), '.2f', 100)} | {r.get('other_5xx', 0)} | {r.get('failed_other', 0)} | "
            f"{fmt(r.get('server_p99_bucket_ms'), 'g')} | {fmt(r.get('driver_lag_p99_ms'), '.2f')} | {fmt(r.get('share_load'), '.1f', 100)} | "
            f"{fmt(r.get('accuracy'), '.2f', 100)} | {fmt(r.get('expected_accuracy'), '.2f', 100)} | "
            f"{fmt(r.get('expected_accuracy_default'), '.2f', 100)} | {fmt(given, '.2f')} |")
    lines += ["", "`server p99 ≤`: the upper bound of the `skimserve_request_duration_seconds` bucket (/classify, "
              "whole run) that holds the 99th percentile, as the server measures it (body read to answer; the "
              "buckets are 5, 10, 25, 50, 100 ms ...). The client's p99 adds the time a request waits before "
              "the server reads it (and the generator's own delay). `driver lag`: how late the open-loop driver "
              "wrote requests against their due times (waiting for a free connection included). `given up or "
              "failed`: requests with no answer within the client timeout (--client-timeout), connection errors "
              "and 4xx; p50/p99 are over answered requests only.",
              "", "Measured accuracy is on the labelled texts each run happened to send (a few thousand, drawn at "
              "random), so runs differ by sampling noise of about a point; the curve columns weigh each answered "
              "request by its model's dev accuracy at the threshold it got (linear between grid points), and "
              "`given up` compares that with the same requests at the defaults.", "",
              "Applied thresholds (answered requests per kind and threshold):", ""]
    for r in rec["runs"]:
        lines.append(f"- {r['factor']:g}x {r['mode']}: " + ", ".join(f"{k}: {v}" for k, v in
                                                                    r.get("thresholds", {}).items()))
    lines += ["", "Plots: [latency_vs_load.png](latency_vs_load.png), "
              "[thresholds_over_time.png](thresholds_over_time.png).", ""]
    return "\n".join(lines)


def plots(rec: dict, out: Path, runs_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for mode, style in (("off", "o-"), ("on", "s-")):
        rs = [r for r in rec["runs"] if r["mode"] == mode and r.get("p99_ms") is not None]
        axes[0].plot([r["factor"] for r in rs], [r["p99_ms"] for r in rs], style, label=f"objective {mode}")
        axes[1].plot([r["factor"] for r in rs], [r["rate"] for r in rs], style, label=f"objective {mode}")
    axes[0].axhline(rec["objective_ms"], color="grey", ls="--", label="objective")
    axes[0].set(xlabel="offered load (x capacity)", ylabel="p99 latency, ms", yscale="log")
    axes[1].plot([r["factor"] for r in rec["runs"]], [r["target_rate"] for r in rec["runs"]], "k:", label="offered")
    axes[1].set(xlabel="offered load (x capacity)", ylabel="answered req/s")
    for ax in axes:
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "latency_vs_load.png", dpi=110)
    plt.close(fig)

    on = [r for r in rec["runs"] if r["mode"] == "on"]
    fig, axes = plt.subplots(len(on), 1, figsize=(9, 2.4 * max(1, len(on))), squeeze=False)
    for ax, r in zip(axes[:, 0], on):
        rows = [x for x in read_requests(runs_dir / r["name"]) if x["status"] == "200"]
        if rows:
            t0 = min(float(x["t"]) for x in rows)
            for kind, color in (("long", "tab:blue"), ("short", "tab:orange")):
                k = [x for x in rows if x["kind"] == kind]
                ax.plot([float(x["t"]) - t0 for x in k], [float(x["threshold"]) for x in k], ".", ms=2,
                        color=color, label=f"{MODELS[kind]}")
        ax.set(title=f"{r['factor']:g}x capacity, objective on: applied threshold", ylabel="threshold",
               ylim=(-0.05, 1.05))
        ax.legend(loc="upper right")
    axes[-1, 0].set_xlabel("seconds into the run")
    fig.tight_layout()
    fig.savefig(out / "thresholds_over_time.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())

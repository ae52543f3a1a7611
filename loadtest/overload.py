"""Overload: the latency-objective mode off and on, at 1x, 1.5x and 2x the server's measured capacity.

  python loadtest/overload.py [--objective-ms 20] [--min-threshold 0.1] [--factors 1,1.5,2] [--run-time 20]
      -> loadtest/results/overload/{overload.json, REPORT.md, latency_vs_load.png, thresholds_over_time.png}

1. Capacity: one `skimserve serve` (one worker, one model thread, pinned to CPU 0; Locust on CPU 1; objective
   off) under a closed loop of Locust OverloadUsers
   (loadtest/locustfile.py: requests of --batch labelled IMDb test reviews or SST-2 test sentences, half
   each, no threshold sent; a batch, so that the model's work, the part a threshold changes, is most of a
   request's cost and one Locust process can offer 2x the server's rate) for --capacity-time seconds: capacity = answered requests/s. The same with every request at the
   floor threshold sent explicitly (what the mode can at most reach).
2. For each factor, objective off then on (a fresh server each run, the same settings otherwise): Locust at
   factor x capacity requests/s, constant throughput per user (users sized so each user's rate stays far
   below 1/latency), for --run-time seconds. Every request is logged (status, client latency, the applied
   threshold and threshold_source, whether the label was right).
3. One table: achieved rate, p50/p99 client latency (all answered requests; the first --warmup seconds
   dropped), 503 share and other 5xx, share of load-lowered requests, accuracy measured on the labelled texts
   sent, and the accuracy expected from the applied thresholds on each model's calibrated curve (dev)
   against the same texts at the default: the accuracy given up.

Safe to import (Locust imports every .py under loadtest/). Loopback only; the load generator shares the
machine with the server, as the capacity measurement does.
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
import time
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
            "by_kind": by_kind, "thresholds": dict(sorted(thresholds.items()))}


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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models-dir", default=str(ROOT / "models"))
    p.add_argument("--objective-ms", type=float, default=20.0)
    p.add_argument("--min-threshold", type=float, default=0.1)
    p.add_argument("--factors", default="1,1.5,2")
    p.add_argument("--run-time", type=float, default=30.0)
    p.add_argument("--warmup", type=float, default=3.0, help="seconds dropped at the start of each run")
    p.add_argument("--capacity-time", type=float, default=20.0)
    p.add_argument("--capacity-users", type=int, default=32)
    p.add_argument("--batch", type=int, default=4, help="texts per request (one kind per request)")
    p.add_argument("--user-rate", type=float, default=2.0, help="requests/s per Locust user")
    p.add_argument("--server-args", default="--workers 1 --pool-threads 1", help="extra `skimserve serve` flags, both modes")
    p.add_argument("--server-cpus", default="0" if (os.cpu_count() or 1) > 1 else None,
                   help="taskset CPU list of the server (default: CPU 0 on a multi-core machine)")
    p.add_argument("--locust-cpus", default="1" if (os.cpu_count() or 1) > 1 else None,
                   help="taskset CPU list of Locust (default: CPU 1)")
    p.add_argument("--out", default=str(HERE / "results" / "overload"))
    args = p.parse_args(argv)
    if pinned(args.server_cpus):  # loadtest/_server.py's command template
        os.environ["SKIMSERVE_SERVE_CMD"] = (f"taskset -c {args.server_cpus} {{python}} -m service serve "
                                             "--models-dir {models_dir} --host 127.0.0.1 --port {port}")
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
              "min_threshold": args.min_threshold, "models": MODELS, "defaults": defaults,
              "server_args": args.server_args, "server_cpus": args.server_cpus,
              "locust_cpus": args.locust_cpus, "batch": args.batch, "run_time_s": args.run_time, "warmup_s": args.warmup, "runs": []}

    with running_server(models_dir, extra=base, timeout=120) as url:
        cap = {}
        for key, env in (("default", {}), ("floor", {"SKIMSERVE_OVERLOAD_THRESHOLD": f"{args.min_threshold:g}"})):
            prefix = runs_dir / f"capacity-{key}"
            locust(url, prefix, args.capacity_users, args.capacity_time, 0.0, env, args.locust_cpus, args.batch)
            cap[key] = summarise(read_requests(prefix), args.capacity_time, args.warmup, curves, defaults)
            print(f"capacity ({key} thresholds): {cap[key]['rate']:.1f} req/s, p99 {cap[key]['p99_ms']:.1f} ms")
    record["capacity"] = cap
    capacity = cap["default"]["rate"]

    for factor in [float(f) for f in args.factors.split(",")]:
        target = factor * capacity
        users = max(1, math.ceil(target / args.user_rate))
        for mode in ("off", "on"):
            name = f"x{factor:g}-{mode}"
            prefix = runs_dir / name
            with running_server(models_dir, extra=base + (objective if mode == "on" else []), timeout=120) as url:
                locust(url, prefix, users, args.run_time, target / users, cpus=args.locust_cpus, batch=args.batch)
                sources, buckets = scrape(url)
            s = summarise(read_requests(prefix), args.run_time, args.warmup, curves, defaults)
            record["runs"].append({"name": name, "factor": factor, "mode": mode, "target_rate": target,
                                   "users": users, "metrics_threshold_source": sources,
                                   "server_p99_bucket_ms": bucket_quantile(buckets, 0.99), **s})
            print(f"{name}: {s.get('rate', 0):.1f}/{target:.1f} req/s, p99 {s.get('p99_ms') or float('nan'):.1f} ms, "
                  f"503 {100 * s.get('share_503', 0):.2f}%, load-lowered {100 * s.get('share_load', 0):.1f}%")
    record["load_average_after"] = os.getloadavg()
    (out / "overload.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "REPORT.md").write_text(report(record))
    plots(record, out, runs_dir)
    print((out / "REPORT.md").read_text())
    return 0


def fmt(v, spec=".1f", scale=1.0) -> str:
    return "-" if v is None else format(scale * v, spec)


def report(rec: dict) -> str:
    cap = rec["capacity"]
    lines = [f"# Overload: latency objective {rec['objective_ms']:g} ms off and on", "",
             f"`{rec['command']}` ({rec['date']}; {rec['hardware'].get('cpu', '')}, {rec['hardware'].get('cpus')} "
             f"cores, load average {rec['load_average_before'][0]:.1f} before, {rec['load_average_after'][0]:.1f} "
             f"after: the machine is shared). Server `skimserve serve {rec['server_args']}` on CPU "
             f"{rec['server_cpus']}, Locust (`OverloadUser`, one process) on CPU {rec['locust_cpus']}. Requests: "
             f"batches of {rec['batch']} IMDb test reviews to `imdb-skim` or of {rec['batch']} SST-2 test sentences "
             "to `sst2-skim`, half each, no threshold sent; objective mode: `--latency-objective-ms "
             f"{rec['objective_ms']:g} --min-threshold {rec['min_threshold']:g}`. Each run {rec['run_time_s']:g} s, "
             f"the first {rec['warmup_s']:g} s dropped; latency = client time of answered requests.", "",
             f"Capacity (closed loop, objective off): **{cap['default']['rate']:.1f} req/s** at the default "
             f"thresholds (p99 {fmt(cap['default']['p99_ms'])} ms), {cap['floor']['rate']:.1f} req/s with every "
             f"request at the floor threshold {rec['min_threshold']:g} (p99 {fmt(cap['floor']['p99_ms'])} ms): "
             f"the most the mode can gain is {cap['floor']['rate'] / max(1e-9, cap['default']['rate']):.2f}x.", "",
             "| load | objective | offered req/s | answered req/s | p50 ms | p99 ms | within objective | 503 % | "
             "other 5xx | server p99 ≤ ms | load-lowered % | accuracy % (measured) | accuracy % expected (curve) | at default (curve) | "
             "given up (curve), points |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rec["runs"]:
        within = r.get("p99_ms") is not None and r["p99_ms"] <= rec["objective_ms"]
        given = (None if r.get("expected_accuracy") is None else
                 100 * (r["expected_accuracy_default"] - r["expected_accuracy"]))
        lines.append(
            f"| {r['factor']:g}x | {r['mode']} | {fmt(r.get('offered_rate'))} | {fmt(r.get('rate'))} | "
            f"{fmt(r.get('p50_ms'), '.2f')} | {fmt(r.get('p99_ms'), '.2f')} | {'yes' if within else 'no'} | "
            f"{fmt(r.get('share_503'), '.2f', 100)} | {r.get('other_5xx', 0)} | {fmt(r.get('server_p99_bucket_ms'), 'g')} | "
            f"{fmt(r.get('share_load'), '.1f', 100)} | "
            f"{fmt(r.get('accuracy'), '.2f', 100)} | {fmt(r.get('expected_accuracy'), '.2f', 100)} | "
            f"{fmt(r.get('expected_accuracy_default'), '.2f', 100)} | {fmt(given, '.2f')} |")
    lines += ["", "`server p99 ≤`: the upper bound of the `skimserve_request_duration_seconds` bucket (/classify, "
              "whole run) that holds the 99th percentile, as the server measures it (body read to answer; the "
              "buckets are 5, 10, 25, 50, 100 ms ...). The client's p99 adds the time a request waits before "
              "the server reads it and the load generator's own delays (one Locust process on a shared core).",
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

"""Headless, bounded Locust run against a local skimserve server; writes Locust's CSVs.

  python loadtest/run_headless.py --host http://127.0.0.1:8000 --name cpu-short-u1 \
      --users 1 --spawn-rate 1 --run-time 30s --tasks short --thresholds 1.0,0.5,0.3 --model sst2-skim
  python loadtest/run_headless.py --name cpu-qa-u1 --tasks qa --qa-model squad-skim-lstm-att

Writes loadtest/results/<name>/: locust_stats.csv, locust_stats_history.csv, locust_failures.csv,
locust_exceptions.csv (Locust's own), locust_skim.csv (server-reported skim rate / per-token latency),
meta.json (the command, the settings, the served models and kernels, the hardware: lscpu model name,
nvidia-smi -L when there is one).

Loopback only: refuses any host that is not 127.0.0.1 / ::1 / localhost. Users <= 64, run time <= 10 min.
Safe to import (Locust imports every .py file under loadtest/ when run as `locust -f loadtest/`).
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
MAX_USERS = 64
MAX_SECONDS = 600


def loopback_only(host: str) -> str:
    u = urlparse(host if "://" in host else f"http://{host}")
    name = u.hostname or ""
    ok = name == "localhost"
    try:
        ok = ok or ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    if not ok or u.scheme not in ("http", "https"):
        raise SystemExit(f"refusing host {host!r}: this runner only targets loopback (127.0.0.1, ::1, localhost)")
    return f"{u.scheme}://{u.netloc}"


def seconds(run_time: str) -> int:
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?", run_time.strip())
    if not m or not any(m.groups()):
        raise SystemExit(f"bad --run-time {run_time!r} (e.g. 30s, 2m, 1m30s)")
    h, mi, s = (int(g or 0) for g in m.groups())
    return h * 3600 + mi * 60 + s


def hardware() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        info["cpu"] = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "")
    except (OSError, subprocess.SubprocessError):
        pass
    if shutil.which("nvidia-smi"):
        try:
            info["gpus"] = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                          timeout=20).stdout.strip().splitlines()
        except (OSError, subprocess.SubprocessError):
            pass
    return info


def served_models(host: str) -> object:
    try:
        import httpx

        return httpx.get(f"{host}/models", timeout=10).json()
    except Exception as exc:  # noqa: BLE001
        return {"error": str(exc)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="http://127.0.0.1:8000")
    ap.add_argument("--name", required=True, help="run name: results go to loadtest/results/<name>/")
    ap.add_argument("--users", type=int, default=1)
    ap.add_argument("--spawn-rate", type=float, default=None, help="users/s (default: all at once)")
    ap.add_argument("--run-time", default="30s")
    ap.add_argument("--tasks", default="short,long", help="short,long,qa")
    ap.add_argument("--thresholds", default=None, help="comma list (default: locustfile's sweep)")
    ap.add_argument("--model", default=None, help="?model= for every task")
    ap.add_argument("--short-model", default=None)
    ap.add_argument("--long-model", default=None)
    ap.add_argument("--qa-model", default=None, help="?model= of the qa task (/qa)")
    ap.add_argument("--label", default="", help="free text stored in meta.json, e.g. 'GPU torch-cuda'")
    ap.add_argument("--results-dir", default=str(RESULTS))
    ap.add_argument("--texts", type=int, default=None, help="texts sampled per task")
    ap.add_argument("--processes", type=int, default=1,
                    help="Locust worker processes (locust --processes): one process of HttpUsers tops out near "
                         "a thousand requests a second, so many users need several to load a fast server")
    args = ap.parse_args(argv)

    host = loopback_only(args.host)
    if not 1 <= args.users <= MAX_USERS:
        raise SystemExit(f"--users must be in 1..{MAX_USERS}")
    run_s = seconds(args.run_time)
    if not 1 <= run_s <= MAX_SECONDS:
        raise SystemExit(f"--run-time must be 1s..{MAX_SECONDS}s")
    if not re.fullmatch(r"[A-Za-z0-9._-]+", args.name):
        raise SystemExit("--name: letters, digits, '.', '_', '-' only")
    out = Path(args.results_dir) / args.name
    out.mkdir(parents=True, exist_ok=True)

    env = dict(os.environ, SKIMSERVE_TASKS=args.tasks)
    for key, val in (("SKIMSERVE_THRESHOLDS", args.thresholds), ("SKIMSERVE_MODEL", args.model),
                     ("SKIMSERVE_SHORT_MODEL", args.short_model), ("SKIMSERVE_LONG_MODEL", args.long_model),
                     ("SKIMSERVE_QA_MODEL", args.qa_model),
                     ("SKIMSERVE_TEXTS", None if args.texts is None else str(args.texts))):
        if val is not None:
            env[key] = val
    env.setdefault("PYTHONPATH", str(HERE.parent))
    cmd = [sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"), "--headless",
           "--host", host, "--users", str(args.users), "--spawn-rate", str(args.spawn_rate or args.users),
           "--run-time", f"{run_s}s", "--stop-timeout", "10", "--csv", str(out / "locust"),
           "--only-summary", "--loglevel", "WARNING", "--exit-code-on-error", "0"]
    raw_dir = out / "skim-raw"
    if args.processes > 1:
        cmd += ["--processes", str(args.processes)]
        shutil.rmtree(raw_dir, ignore_errors=True)
        raw_dir.mkdir()
        env["SKIMSERVE_SKIM_RAW_DIR"] = str(raw_dir)
    meta = {"name": args.name, "label": args.label, "host": host, "users": args.users,
            "spawn_rate": args.spawn_rate or args.users, "run_time_s": run_s, "locust_processes": args.processes, "tasks": args.tasks,
            "thresholds": env.get("SKIMSERVE_THRESHOLDS", "(locustfile default)"),
            "model": args.model, "short_model": args.short_model, "long_model": args.long_model,
            "qa_model": args.qa_model,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "hardware": hardware(),
            "server_models": served_models(host), "command": " ".join(sys.argv)}
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, timeout=run_s + 90)
    meta["wall_s"] = round(time.time() - t0, 1)
    meta["locust_rc"] = proc.returncode
    if args.processes > 1:  # one locust_skim.csv from every worker's samples
        from skimlog import SkimLog

        merged = SkimLog()
        for part in sorted(raw_dir.glob("*.json")):
            merged.merge_raw(part)
        if merged.rows:
            merged.write(out / "locust_skim.csv")
        shutil.rmtree(raw_dir, ignore_errors=True)
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {out}")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())

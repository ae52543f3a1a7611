"""The CPU-vs-GPU comparison: start a local server per kernel, run the same Locust scenarios against each,
stop it. Every run goes through run_headless.py (loopback only, bounded), so the CSVs land in
<results>/<prefix>-<kernel label>-<scenario>/ and report.py turns them into the report.

  python loadtest/run_matrix.py --models-dir models --kernels cpu=fast,gpu=torch-cuda --run-time 20s \
      --prefix h100 --results loadtest/results/cpu-vs-gpu

Scenarios (model per task picked from --models-dir: sst2-skim / imdb-skim / imdb-lstm / sst2-lstm, or the
tiny random models tiny-skim / tiny-lstm when trained ones are missing; the choice is recorded):
  skim-short-u1   short texts, skim model, 1 user (batch 1), thresholds swept
  skim-long-u1    long texts, skim model, 1 user, thresholds swept
  skim-long-u8    long texts, skim model, 8 concurrent users, thresholds swept
  dense-short-u1  short texts, dense LSTM, 1 user (no threshold effect)
  dense-long-u1   long texts, dense LSTM, 1 user
  dense-long-u8   long texts, dense LSTM, 8 concurrent users
With --qa, also the /qa scenarios (squad-skim-lstm-att / squad-lstm-att, or the random readers
tiny-reader-skim / tiny-reader when the trained ones are missing; SQuAD test questions):
  skim-qa-u1      skim reader, 1 user, thresholds swept (one threshold for every layer)
  skim-qa-u8      skim reader, 8 concurrent users, thresholds swept
  dense-qa-u1     dense reader, 1 user
  dense-qa-u8     dense reader, 8 concurrent users
The kernel is chosen with the server's setting ($SKIMSERVE_KERNEL, see service/config.py).
Safe to import (Locust imports every .py file under loadtest/).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SKIM_THRESHOLDS = "1.0,0.7,0.5,0.3,0.1"


def pick_models(models_dir: Path) -> dict[str, str]:
    have = {p.name for p in models_dir.iterdir() if (p / "manifest.json").exists()}
    pick = {}
    for key, wanted, fallback in (("short_skim", "sst2-skim", "tiny-skim"), ("long_skim", "imdb-skim", "tiny-skim"),
                                  ("short_dense", "sst2-lstm", "tiny-lstm"), ("long_dense", "imdb-lstm", "tiny-lstm"),
                                  ("qa_skim", "squad-skim-lstm-att", "tiny-reader-skim"),
                                  ("qa_dense", "squad-lstm-att", "tiny-reader")):
        pick[key] = wanted if wanted in have else (fallback if fallback in have else "")
    return pick


MODEL_KEYS = ("short_model", "long_model", "qa_model")


def scenarios(m: dict[str, str], users_many: int | list[int], qa: bool = False) -> list[dict]:
    """skim and dense, short and long texts, at 1 user and at each of `users_many` (e.g. [8, 64])."""
    many = [users_many] if isinstance(users_many, int) else list(users_many)
    out = []
    for kind, thr in (("skim", SKIM_THRESHOLDS), ("dense", "1.0")):
        for users in [1, *many]:
            for length in ("short", "long"):
                if length == "short" and users > 1 and users == many[0] and len(many) == 1:
                    continue  # the classic matrix: short texts at 1 user only
                out.append({"name": f"{kind}-{length}-u{users}", "tasks": length,
                            f"{length}_model": m[f"{length}_{kind}"], "users": users, "thr": thr})
    if qa:
        for kind, thr in (("skim", SKIM_THRESHOLDS), ("dense", "1.0")):
            for users in [1, *many]:
                out.append({"name": f"{kind}-qa-u{users}", "tasks": "qa", "qa_model": m.get(f"qa_{kind}", ""),
                            "users": users, "thr": thr})
    return [s for s in out if any(s.get(k) for k in MODEL_KEYS)]


def parse_kernels(spec: str) -> list[tuple[str, str, dict[str, str]]]:
    """'cpu=fast;SKIMSERVE_WORKERS=16,gpu=torch-cuda;SKIMSERVE_GPU_BATCH_SIZE=64' -> [(label, kernel, env)]."""
    out = []
    for item in filter(None, spec.split(",")):
        head, *pairs = item.split(";")
        label, kernel = head.split("=", 1)
        out.append((label, kernel, dict(p.split("=", 1) for p in pairs)))
    return out


def warm_up(url: str, models: set[str], n: int = 5, qa_models: set[str] = frozenset()) -> None:
    """A few requests per model before measuring: CUDA context, cuDNN plans and weight uploads happen here."""
    import httpx

    text = "a gorgeous , witty , seductive movie that is never boring . " * 10
    question = "what is never boring ?"
    with httpx.Client(base_url=url, timeout=120) as c:
        for m in sorted(models):
            for i in range(n):
                params = {"model": m, "threshold": (1.0, 0.3)[i % 2]}
                if m in qa_models:
                    c.post("/qa", params=params, json={"context": text, "question": question})
                else:
                    c.post("/classify", params=params, json={"text": text})


def served_kernels(url: str, models: set[str]) -> str:
    """The kernel(s) the server really uses (a requested 'fast' may have fallen back to 'reference')."""
    import httpx

    try:
        body = httpx.get(f"{url}/models", timeout=10).json()
        items = body.get("models", body) if isinstance(body, dict) else body
        return "+".join(sorted({str(m.get("kernel")) for m in items if m.get("name") in models and m.get("kernel")}))
    except Exception:  # noqa: BLE001
        return ""


def main(argv: list[str] | None = None) -> int:
    import run_headless
    from _server import running_server

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models-dir", default="models")
    ap.add_argument("--kernels", default="cpu=fast,gpu=torch-cuda",
                    help="label=kernel[;SETTING=value...],... e.g. 'cpu=fast;SKIMSERVE_WORKERS=16' (server settings "
                         "per label: workers, GPU batching)")
    ap.add_argument("--run-time", default="20s")
    ap.add_argument("--users", default="8", help="concurrent users of the *-u<N> scenarios, a comma list (8,64)")
    ap.add_argument("--processes-above", type=int, default=16,
                    help="runs with more users than this use --locust-processes Locust processes")
    ap.add_argument("--locust-processes", type=int, default=4)
    ap.add_argument("--prefix", default="local")
    ap.add_argument("--results", default=str(HERE / "results"))
    ap.add_argument("--only", default="", help="comma list of scenario names to run")
    ap.add_argument("--kernel-env", default="SKIMSERVE_KERNEL", help="server setting that picks the kernel")
    ap.add_argument("--qa", action="store_true", help="add the /qa scenarios (skim-qa-*, dense-qa-*)")
    args = ap.parse_args(argv)

    models_dir = Path(args.models_dir).resolve()
    picked = pick_models(models_dir)
    users_many = [int(u) for u in str(args.users).split(",") if u]
    plan = [s for s in scenarios(picked, users_many if len(users_many) > 1 else users_many[0], qa=args.qa)
            if not args.only or s["name"] in args.only.split(",")]
    used = {s[k] for s in plan for k in MODEL_KEYS if s.get(k)}
    qa_models = {s["qa_model"] for s in plan if s.get("qa_model")}
    Path(args.results).mkdir(parents=True, exist_ok=True)
    summary = {"models": picked, "kernels": args.kernels, "run_time": args.run_time, "runs": []}
    rc = 0
    for label, kernel, server_env in parse_kernels(args.kernels):
        log = Path(args.results) / f"server-{args.prefix}-{label}.log"
        t0 = time.time()
        with running_server(models_dir, env={args.kernel_env: kernel, **server_env}, timeout=120, log=log) as url:
            warm_up(url, used, qa_models=qa_models)
            for s in plan:
                name = f"{args.prefix}-{label}-{s['name']}"
                actual = served_kernels(url, {s[k] for k in MODEL_KEYS if s.get(k)}) or kernel
                cmd = ["--host", url, "--name", name, "--users", str(s["users"]), "--run-time", args.run_time,
                       "--tasks", s["tasks"], "--thresholds", s["thr"], "--label", f"{label} {actual}",
                       "--results-dir", args.results]
                if s["users"] > args.processes_above:
                    cmd += ["--processes", str(args.locust_processes)]
                for k in MODEL_KEYS:
                    if s.get(k):
                        cmd += [f"--{k.replace('_', '-')}", s[k]]
                print(f"== {name}", flush=True)
                r = run_headless.main(cmd)
                rc = rc or r
                summary["runs"].append({"name": name, "kernel": kernel, "server_env": server_env, **s, "rc": r})
        summary.setdefault("server_wall_s", {})[label] = round(time.time() - t0, 1)
    (Path(args.results) / f"matrix-{args.prefix}.json").write_text(json.dumps(summary, indent=2) + "\n")
    return rc


if __name__ == "__main__":
    sys.exit(main())

"""Model time per token across thresholds for one classifier (the dial), one thread, interleaved rounds:

  python -m benchmarks.dial --model imdb-lstm-skip [--texts 300] [--rounds 7]
      -> benchmarks/results/dial-<model>.{json,md}

Timed: Classifier.forward on the first N test texts of the model's dataset, tokenized beforehand; every
threshold once per round, the median over rounds reported, with the skip/skim rate and FLOP reduction of
the same texts, so that the per-token time can be read against the skip rate.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from service.artifacts import load_artifact  # noqa: E402
from service.families import build_model  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
THRESHOLDS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)


def time_trend(rows: list[dict]) -> dict | None:
    """How per-token time follows the skip rate over the rows that run the per-token loop (threshold < 1)."""
    loop = sorted((r for r in rows if r["threshold"] < 1.0), key=lambda r: r["skip_rate"])
    if len(loop) < 3 or loop[-1]["skip_rate"] == 0:  # a plain model never skips: nothing to read
        return None
    x = np.array([r["skip_rate"] for r in loop])
    y = np.array([r["us_per_token"] for r in loop])
    rank = lambda v: np.argsort(np.argsort(v)).astype(float)  # noqa: E731 (no ties in practice)
    rho = float(np.corrcoef(rank(x), rank(y))[0, 1])
    slope, intercept = np.polyfit(x, y, 1)
    inv = int(sum(y[i + 1] >= y[i] for i in range(len(y) - 1)))
    return {"spearman": rho, "inversions": inv, "pairs": len(y) - 1, "slope_us": float(slope),
            "intercept_us": float(intercept)}


def main(argv=None):
    from training import data
    from training.evaluate import cpu_name

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--models-dir", default=str(ROOT / "models"))
    p.add_argument("--texts", type=int, default=300)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    model = build_model(load_artifact(Path(args.models_dir) / args.model), "fast")
    examples = data.load(model.manifest["training"]["dataset"], "test", args.data_dir, args.texts)
    ids = [model.to_ids(model.tokenize(ex.text)) for ex in examples]
    tokens = sum(len(i) for i in ids)
    rows = []
    for thr in THRESHOLDS:
        skimmed = flops = full = 0
        for i in ids:
            _, out = model.forward(i, thr)
            c = model.layer_cost(out)
            skimmed, flops, full = skimmed + c.skimmed, flops + c.flops, full + c.flops_full
        rows.append({"threshold": thr, "skip_rate": skimmed / tokens, "flop_reduction": full / flops, "rounds_s": []})
    for _ in range(args.rounds):
        for r in rows:  # interleaved: every threshold once per round
            t0 = time.perf_counter()
            for i in ids:
                model.forward(i, r["threshold"])
            r["rounds_s"].append(time.perf_counter() - t0)
    for r in rows:
        r["us_per_token"] = 1e6 * statistics.median(r["rounds_s"]) / tokens
    base = rows[0]["us_per_token"]
    for r in rows:
        r["speedup_vs_t1"] = base / r["us_per_token"]
    trend = time_trend(rows)
    result = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "cpu": cpu_name(), "threads": 1,
              "model": args.model, "texts": len(ids), "tokens": tokens, "rounds": args.rounds, "rows": rows,
              "trend": trend,
              "command": f"python -m benchmarks.dial --model {args.model} --texts {args.texts} --rounds {args.rounds}"}
    md = [f"# {args.model}: model time per token across thresholds ({result['date']}, {result['cpu']}, one thread)", "",
          f"First {len(ids)} test texts ({tokens} tokens), `fast` kernel, median of {args.rounds} interleaved rounds. "
          f"Command: `{result['command']}`.", "",
          "| threshold | skipped / skimmed % | FLOP reduction | µs / token | speed-up vs t=1.0 |",
          "| ---: | ---: | ---: | ---: | ---: |"]
    md += [f"| {r['threshold']:.1f} | {100 * r['skip_rate']:.1f} | {r['flop_reduction']:.2f}x | {r['us_per_token']:.2f} | "
           f"{r['speedup_vs_t1']:.2f}x |" for r in rows]
    if trend:
        md += ["", f"Among the rows that run the per-token loop (threshold < 1; t=1.0 runs the dense form: one input GEMM "
               f"over all tokens), time against skip rate: Spearman rank correlation {trend['spearman']:+.3f}, "
               f"{trend['inversions']} of {trend['pairs']} adjacent pairs (by skip rate) where more skipping was not "
               f"faster; least-squares fit µs/token = {trend['intercept_us']:.2f} {trend['slope_us']:+.2f} x skip rate."]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"dial-{args.model}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"dial-{args.model}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return result


if __name__ == "__main__":
    main()

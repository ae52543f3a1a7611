"""QA readers' model time per token at their default thresholds against the dense reader, one thread,
interleaved rounds (medians), next to the FLOP ratio on the same questions:

  python -m benchmarks.qa [--questions 200] [--rounds 7]   -> benchmarks/results/qa.{json,md}

Timed: Reader.forward (attention, the four layer-directions on the `fast` kernel, span heads) over the first
N questions of the SQuAD test split, tokenized beforehand. Configurations, interleaved round by round:
the dense squad-lstm-att, squad-skim-lstm-att at its default threshold, and at threshold 1.0 (every step
read). "share of FLOP ratio" = measured speed-up / FLOP reduction, both against the dense reader.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from service.artifacts import load_artifact  # noqa: E402
from service.families import build_model  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results"


def main(argv=None):
    from training import squad
    from training.evaluate import cpu_name

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models-dir", default=str(ROOT / "models"))
    p.add_argument("--dense", default="squad-lstm-att")
    p.add_argument("--skim", default="squad-skim-lstm-att")
    p.add_argument("--questions", type=int, default=200)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    dense = build_model(load_artifact(Path(args.models_dir) / args.dense), "fast")
    skim = build_model(load_artifact(Path(args.models_dir) / args.skim), "fast")
    examples = squad.load_squad("test", args.data_dir, tokenize_all=False)[:args.questions]
    inputs = [(dense.to_ids(dense.tokenize(ex.context)), dense.to_ids(dense.tokenize(ex.question))) for ex in examples]
    context_tokens = sum(len(c) for c, _ in inputs)
    configs = {"dense": (dense, 1.0), "skim@default": (skim, skim.default_threshold), "skim@1.0": (skim, 1.0)}

    def flops(model, thr):
        total = 0
        for c, q in inputs:
            _, _, results = model.forward(c, q, thr)
            total += sum(r.cost.flops for r in results) + model.extra_flops(len(c), len(q))
        return total

    fl = {k: flops(m, t) for k, (m, t) in configs.items()}
    skim_rate = {k: None for k in configs}
    for k, (m, t) in configs.items():
        steps = skimmed = 0
        for c, q in inputs:
            for r in m.forward(c, q, t)[2]:
                steps, skimmed = steps + len(r.out.skim), skimmed + r.out.skimmed
        skim_rate[k] = skimmed / steps
    samples = {k: [] for k in configs}
    for _ in range(args.rounds):
        for k, (m, t) in configs.items():  # interleaved: every configuration once per round
            t0 = time.perf_counter()
            for c, q in inputs:
                m.forward(c, q, t)
            samples[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in samples.items()}
    rows = []
    for k in configs:
        speedup = med["dense"] / med[k]
        flop_r = fl["dense"] / fl[k]
        rows.append({"config": k, "threshold": configs[k][1], "skim_rate": skim_rate[k],
                     "us_per_context_token": 1e6 * med[k] / context_tokens, "speedup_vs_dense": speedup,
                     "flop_reduction_vs_dense": flop_r, "share_of_flop_ratio": speedup / flop_r if flop_r else 1.0,
                     "rounds_s": samples[k]})
    result = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "cpu": cpu_name(), "threads": 1,
              "questions": len(inputs), "context_tokens": context_tokens, "rounds": args.rounds,
              "statistic": "median over interleaved rounds", "rows": rows,
              "command": " ".join(["python -m benchmarks.qa", *(sys.argv[1:] if argv is None else argv)])}
    md = [f"# QA readers: model time per context token ({result['date']}, {result['cpu']}, one thread)", "",
          f"{len(inputs)} SQuAD test questions ({context_tokens} context tokens), `fast` kernel, median of "
          f"{args.rounds} interleaved rounds. Command: `{result['command']}`.", "",
          "| configuration | threshold | skim % (layer-steps) | µs / context token | speed-up vs dense | "
          "FLOP reduction vs dense | speed-up / FLOP reduction |",
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        md.append(f"| {r['config']} | {r['threshold']} | {100 * r['skim_rate']:.1f} | {r['us_per_context_token']:.2f} | "
                  f"{r['speedup_vs_dense']:.2f}x | {r['flop_reduction_vs_dense']:.2f}x | {r['share_of_flop_ratio']:.2f} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "qa.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "qa.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return result


if __name__ == "__main__":
    main()

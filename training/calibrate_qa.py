"""Choose a QA skim reader's default threshold on the dev split and write it into its manifest.

  python -m training.calibrate_qa models/squad-skim-lstm-att            # grid 0.30, 0.32, ..., 0.70
  python -m training.calibrate_qa models/squad-skim-lstm-att --no-write

train_qa.py picks the default on a 0.1 grid; a reader's F1 and skim rate move by a point and a few percent
between grid points, so this sweeps a finer grid (one threshold for every layer, as a request's
`threshold=`). Rule, fixed in advance: the highest dev F1 (official SQuAD metric) among the thresholds whose
dev skim rate over all layer-steps is at least --min-skim (0.40, issue 16's floor); ties: the lower
threshold (it skims more). The test split is never read. The sweep and the rule go into the manifest
(default_threshold_selection) so the choice can be checked and rerun.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from service.artifacts import load_artifact
from service.families import build_model

from . import squad
from .calibrate import write_default
from .runlog import command_line
from .squad_metric import f1_score, metric_max_over_ground_truths

GRID = [round(0.30 + 0.02 * i, 2) for i in range(21)]


def sweep(model, examples, thresholds) -> list[dict]:
    """(threshold, dev F1 in percent, skim rate over all layer-steps, per layer) for each threshold."""
    prepared = [(ex, model.tokenize(ex.context), model.tokenize(ex.question)) for ex in examples]
    rows = []
    for t in thresholds:
        f1 = 0.0
        skimmed: dict[str, int] = {}
        tokens = 0
        for ex, ctx, q in prepared:
            a = model.answer_tokens(ex.context, ctx, q, t)
            f1 += metric_max_over_ground_truths(f1_score, a.text, ex.answer_texts)
            tokens += len(ctx)
            for r in a.layers:
                skimmed[r.layer.name] = skimmed.get(r.layer.name, 0) + r.out.skimmed
        per = {k: v / tokens for k, v in skimmed.items()}
        rows.append({"threshold": t, "f1": 100 * f1 / len(prepared), "skim_rate": sum(per.values()) / len(per),
                     "skim": per})
    return rows


def choose_threshold(rows: list[dict], min_skim: float) -> float | None:
    ok = [r for r in rows if r["skim_rate"] >= min_skim]
    if not ok:
        return None
    best = max(r["f1"] for r in ok)
    return min(r["threshold"] for r in ok if r["f1"] == best)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir")
    p.add_argument("--min-skim", type=float, default=0.4)
    p.add_argument("--grid", default=None, help="comma-separated thresholds (default 0.30..0.70 by 0.02)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--limit", type=int, default=None, help="dev questions used (tests); stated in the record")
    p.add_argument("--kernel", default="fast", help="decisions are identical on every kernel (tested)")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    folder = Path(args.model_dir)
    model = build_model(load_artifact(folder), kernel=args.kernel)
    if model.task != "qa" or not model.stack.skims:
        raise SystemExit(f"{folder}: not a QA reader that skims")
    grid = [float(x) for x in args.grid.split(",")] if args.grid else GRID
    dev = squad.load_squad("dev", args.data_dir, tokenize_all=False)[:args.limit]
    rows = sweep(model, dev, grid)
    chosen = choose_threshold(rows, args.min_skim)
    for r in rows:
        print(f"dev t={r['threshold']:.2f} F1={r['f1']:.2f} skim={100 * r['skim_rate']:.1f}%"
              f"{'  <- default' if r['threshold'] == chosen else ''}")
    if chosen is None:
        raise SystemExit(f"{folder}: no threshold of the grid skims >= {args.min_skim} of dev's layer-steps")
    record = {"split": "dev", "examples": len(dev), "limit": args.limit, "min_skim": args.min_skim,
              "rule": f"highest dev F1 among thresholds {grid[0]}..{grid[-1]} with dev skim rate (all layer-steps) "
                      f">= {args.min_skim} (ties: the lower threshold); chosen on dev only, the test split unread",
              "command": command_line("training.calibrate_qa", argv), "sweep": rows}
    if args.no_write:
        return chosen, record
    write_default(folder, chosen, record)
    return chosen, record


if __name__ == "__main__":
    main()

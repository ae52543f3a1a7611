"""A skim model's calibrated curve and budget table: written into its manifest (the server reads it at load)
and its card.

  python -m training.calibrate_curve models/imdb-skim [--data-dir ../shared/data] [--test-limit N]

On the dev split, for thresholds 0.0, 0.1, ..., 1.0: accuracy, skim rate, FLOP share (flops / flops_full of the
whole request, head included), FLOP reduction and per-token time (fast kernel, one thread, median of rounds
over the first texts). Then, for budgets 0.1, 0.2, 0.3, 0.5 (service/engine/budget.py caps every layer),
the threshold a request that sends only a budget gets: each grid threshold runs under the cap on dev, the
most accurate one is the budget's (the manifest's `budgets` table; service/calibration.py reads it). The
card adds the test accuracy and the largest FLOP share of each budget (test is read for the card only,
never to choose).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from service.artifacts import MANIFEST, load_artifact, refresh_checksums
from service.calibration import Calibration
from service.families import build_model

from . import data
from .evaluate import THRESHOLDS, time_thresholds, write_card
from .runlog import command_line

BUDGETS = (0.1, 0.2, 0.3, 0.5)
RULE = "table"  # service/calibration.py: the budgets table's thresholds (chosen on dev, per budget)


def run_split(model, encoded, labels, threshold: float, budget: float | None = None) -> dict:
    """Accuracy and cost of one (threshold, budget) over a split, through the served forward path."""
    correct = tokens = skimmed = 0
    flops = full = 0
    max_share = 0.0
    head = model.head_flops
    for ids, y in zip(encoded, labels):
        logits, results = model.forward_all(ids, threshold, budget)
        correct += int(np.argmax(logits) == y)
        f = head + sum(r.cost.flops for r in results)
        ff = head + sum(r.cost.flops_full for r in results)
        tokens += sum(r.cost.tokens for r in results)
        skimmed += sum(r.cost.skimmed for r in results)
        flops += f
        full += ff
        if ff:
            max_share = max(max_share, f / ff)
    return {"accuracy": correct / len(labels), "skim_rate": skimmed / tokens if tokens else 0.0,
            "flop_share": flops / full if full else 1.0, "max_flop_share": max_share,
            "flop_reduction": full / flops if flops else 1.0}


def curve(model, encoded, labels, timing_texts: int, rounds: int) -> list[dict]:
    rows = []
    for thr in THRESHOLDS:
        rows.append({"threshold": thr, **run_split(model, encoded, labels, thr)})
    times = time_thresholds(model, encoded[:timing_texts], list(THRESHOLDS), rounds)
    for r in rows:
        r["per_token_us"] = times[r["threshold"]]
    return rows


def budget_rows(model, encoded, labels, rows: list[dict], default: float) -> list[dict]:
    """For each budget, every grid threshold (and the default) run under that cap on dev; the budget's
    threshold is the one with the highest dev accuracy (ties: the default, then the higher threshold). Two
    simpler rules are kept beside it for the card: `default` (the default threshold, the cap alone acts:
    reads the start of a text, skims the rest) and `curve` (the highest threshold whose uncapped dev FLOP
    share fits the budget: skims spread over the text)."""
    curve_rule = Calibration(rows, "curve")
    out = []
    for b in BUDGETS:
        tried = {thr: run_split(model, encoded, labels, thr, b) for thr in sorted(set(THRESHOLDS) | {default})}
        best = max(tried, key=lambda t: (tried[t]["accuracy"], t == default, t))
        cthr = curve_rule.threshold_for_budget(b)
        out.append({"budget": b, "threshold": best, "dev_accuracy": tried[best]["accuracy"],
                    "dev_flop_share": tried[best]["flop_share"], "dev_max_flop_share": tried[best]["max_flop_share"],
                    "dev_default": {"threshold": default, **tried[default]},
                    "dev_curve": {"threshold": cthr, **tried[cthr]},
                    "dev_by_threshold": {f"{t:g}": tried[t]["accuracy"] for t in sorted(tried)}})
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--limit", type=int, default=None, help="dev examples used (tests); stated in the record")
    p.add_argument("--test-limit", type=int, default=None, help="test examples for the card's budget table")
    p.add_argument("--timing-texts", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--kernel", default="fast", help="decisions are identical on every kernel (tested)")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    folder = Path(args.model_dir)
    model = build_model(load_artifact(folder), kernel=args.kernel)
    if model.task != "classify":
        raise SystemExit(f"{folder}: a {model.task} model; this script calibrates classifiers (accuracy on dev)")
    if not model.stack.honours_budget:
        raise SystemExit(f"{folder}: not a skim model (a plain LSTM layer cannot skim): nothing to calibrate")
    dataset = model.manifest["training"]["dataset"]
    dev = data.load(dataset, "dev", args.data_dir, args.limit)
    enc = [model.to_ids(model.tokenize(ex.text)) for ex in dev]
    labels = [ex.label for ex in dev]
    rows = curve(model, enc, labels, args.timing_texts, args.rounds)
    budgets = budget_rows(model, enc, labels, rows, model.default_threshold)
    test = data.load(dataset, "test", args.data_dir, args.test_limit)
    tenc = [model.to_ids(model.tokenize(ex.text)) for ex in test]
    tlab = [ex.label for ex in test]
    for r in budgets:
        t = run_split(model, tenc, tlab, r["threshold"], r["budget"])
        r.update({"test_accuracy": t["accuracy"], "test_flop_share": t["flop_share"],
                  "test_max_flop_share": t["max_flop_share"]})
    floor = model.stack.floor_share()
    record = {"split": "dev", "examples": len(dev), "limit": args.limit, "kernel": args.kernel,
              "command": command_line("training.calibrate_curve", argv), "floor_share": floor,
              "curve": rows, "budget_rule": RULE,
              "budget_rule_text": "threshold of a budget-only request: per budget, the grid threshold with the "
                                  "highest dev accuracy under that cap; a budget between two rows takes the "
                                  "row of the largest budget below it"}
    for r in rows:
        print(f"dev t={r['threshold']:.1f} acc={100 * r['accuracy']:.2f} skim={100 * r['skim_rate']:.1f}% "
              f"share={r['flop_share']:.3f} {r['per_token_us']:.2f}us/token")
    for r in budgets:
        print(f"budget {r['budget']}: t={r['threshold']} dev acc {100 * r['dev_accuracy']:.2f} (default "
              f"t={r['dev_default']['threshold']} {100 * r['dev_default']['accuracy']:.2f}, curve "
              f"t={r['dev_curve']['threshold']} {100 * r['dev_curve']['accuracy']:.2f}) "
              f"test acc {100 * r['test_accuracy']:.2f} max share {r['test_max_flop_share']:.3f}")
    if args.no_write:
        return record, budgets
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["calibration"] = {**record, "budgets": [{k: r[k] for k in (
        "budget", "threshold", "dev_accuracy", "dev_flop_share", "dev_max_flop_share")} for r in budgets]}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    card_path = folder / "card.json"
    if card_path.exists():
        card = json.loads(card_path.read_text())
        card["calibration"] = {**record, "test_examples": len(test), "test_limit": args.test_limit,
                               "budgets": budgets}
        write_card(folder, card)
    refresh_checksums(folder)  # last: card.json and card.md are listed in the manifest's files
    print(f"{folder}: calibration written")
    return record, budgets


if __name__ == "__main__":
    main()

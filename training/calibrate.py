"""Choose a Skim-LSTM's default threshold on the dev split and write it into its manifest.

  python -m training.calibrate models/imdb-skim            # the dataset's skim floor (imdb 0.75, sst2/mr 0.5)
  python -m training.calibrate models/mr-skim --min-skim 0.5 --no-write

The served default is the threshold a request gets when it names none. It is chosen once, on dev, by a
rule fixed in advance: over the card's grid 0.0, 0.1, ..., 1.0, the highest dev accuracy among the
thresholds whose dev skim rate is at least the floor (ties: the lower threshold, which skims more).
0.5 (the trained argmax) stays the default when it is at least as good. The test split is never read.
The dev sweep and the rule are kept in the manifest (default_threshold_selection), so the choice can
be checked and rerun. Requests that pass ?threshold= are unaffected.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from service.artifacts import MANIFEST, load_artifact, refresh_checksums
from service.families import build_model

from . import data
from .evaluate import THRESHOLDS, sweep
from .runlog import command_line

# skim-rate floors: the targets where it sets one (IMDb 75%, SST-2 50%); MR as SST-2 (its skims
# were trained and selected with a 0.5 floor, the paper skims 58.5% there)
MIN_SKIM = {"imdb": 0.75, "sst2": 0.5, "mr": 0.5}
TRAINED_ARGMAX = 0.5


def choose_threshold(rows: list[dict], min_skim: float) -> float:
    """rows: a sweep (threshold, accuracy, skim_rate). The best dev accuracy among rows skimming at least
    min_skim; ties go to 0.5 first (the trained argmax), then to the lower threshold. No row qualifies: 0.5."""
    ok = [r for r in rows if r["skim_rate"] >= min_skim]
    if not ok:
        return TRAINED_ARGMAX
    best = max(r["accuracy"] for r in ok)
    tied = sorted(r["threshold"] for r in ok if r["accuracy"] == best)
    return TRAINED_ARGMAX if TRAINED_ARGMAX in tied else tied[0]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir")
    p.add_argument("--min-skim", type=float, default=None, help="default: the dataset's floor (MIN_SKIM)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--limit", type=int, default=None, help="dev examples used (tests); stated in the record")
    p.add_argument("--kernel", default="reference", help="decisions are identical on every kernel (tested)")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    folder = Path(args.model_dir)
    model = build_model(load_artifact(folder), kernel=args.kernel)
    if not model.layer.skims:
        raise SystemExit(f"{folder}: a plain LSTM never skims; its threshold has no effect")
    dataset = model.manifest["training"]["dataset"]
    min_skim = MIN_SKIM.get(dataset, 0.5) if args.min_skim is None else args.min_skim
    dev = data.load(dataset, "dev", args.data_dir, args.limit)
    encoded = [model.to_ids(model.tokenize(ex.text)) for ex in dev]
    rows = sweep(model, encoded, [ex.label for ex in dev], THRESHOLDS)
    chosen = choose_threshold(rows, min_skim)
    for r in rows:
        print(f"dev t={r['threshold']:.1f} acc={100 * r['accuracy']:.2f} skim={100 * r['skim_rate']:.1f}%"
              f"{'  <- default' if r['threshold'] == chosen else ''}")
    record = {"split": "dev", "examples": len(dev), "limit": args.limit, "min_skim": min_skim,
              "rule": f"highest dev accuracy among thresholds 0.0..1.0 with dev skim rate >= {min_skim} "
                      "(ties: 0.5, then the lower threshold); chosen on dev only, the test split unread",
              "command": command_line("training.calibrate", argv),
              "sweep": [{k: r[k] for k in ("threshold", "accuracy", "skim_rate", "flop_reduction")} for r in rows]}
    if args.no_write:
        return chosen, record
    write_default(folder, chosen, record)
    return chosen, record


def write_default(folder: Path, chosen: float, record: dict) -> None:
    """The chosen default and its selection record into the model's manifest (checksums refreshed)."""
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["default_threshold"] = chosen
    manifest["default_threshold_selection"] = record
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    refresh_checksums(folder)
    print(f"{folder}: default_threshold = {chosen}")


if __name__ == "__main__":
    main()

"""Print the trained artifact to build on: the highest dev accuracy, preferring a hidden size.

  python -m training.pick --prefer-hidden 100 --margin 0.01 RUNS/sst2-lstm-* models/sst2-lstm
A model of another hidden size is picked only when its dev accuracy beats the best model of the
preferred size by at least --margin (the serving cost grows with d). Dev split only, never test.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from service.artifacts import read_manifest


def prefer_size(cands: list[dict], prefer_hidden: int | None, margin: float) -> dict:
    """The candidate with the best dev accuracy; one of another hidden size than prefer_hidden only when it
    beats the best of the preferred size by at least margin. cands: dicts with dev_accuracy and hidden."""
    best = max(cands, key=lambda c: c["dev_accuracy"])
    pref = [c for c in cands if c["hidden"] == prefer_hidden]
    if prefer_hidden is not None and pref and best["hidden"] != prefer_hidden:
        best_pref = max(pref, key=lambda c: c["dev_accuracy"])
        if best["dev_accuracy"] < best_pref["dev_accuracy"] + margin:
            best = best_pref
    return best


def pick(paths, prefer_hidden: int | None = None, margin: float = 0.0) -> Path:
    cands = []
    for p in map(Path, paths):
        if (p / "manifest.json").is_file():
            m = read_manifest(p)
            cands.append({"dev_accuracy": m["training"]["dev_accuracy"], "hidden": m["sizes"]["hidden"], "path": p})
    if not cands:
        raise SystemExit("no artifacts among: " + " ".join(map(str, paths)))
    best = prefer_size(cands, prefer_hidden, margin)
    for c in sorted(cands, key=lambda c: -c["dev_accuracy"]):
        print(f"{c['dev_accuracy']:.4f} d={c['hidden']} {c['path']}{'  <- picked' if c is best else ''}",
              file=sys.stderr)
    return best["path"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefer-hidden", type=int, default=None)
    ap.add_argument("--margin", type=float, default=0.0)
    ap.add_argument("paths", nargs="+")
    a = ap.parse_args(argv)
    print(pick(a.paths, a.prefer_hidden, a.margin))


if __name__ == "__main__":
    main()

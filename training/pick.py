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


def pick(paths, prefer_hidden: int | None = None, margin: float = 0.0) -> Path:
    cands = []
    for p in map(Path, paths):
        if (p / "manifest.json").is_file():
            m = read_manifest(p)
            cands.append((m["training"]["dev_accuracy"], m["sizes"]["hidden"], p))
    if not cands:
        raise SystemExit("no artifacts among: " + " ".join(map(str, paths)))
    best = max(cands, key=lambda c: c[0])
    pref = [c for c in cands if c[1] == prefer_hidden]
    if prefer_hidden is not None and pref and best[1] != prefer_hidden:
        best_pref = max(pref, key=lambda c: c[0])
        if best[0] < best_pref[0] + margin:
            best = best_pref
    for acc, d, p in sorted(cands, key=lambda c: -c[0]):
        print(f"{acc:.4f} d={d} {p}{'  <- picked' if p == best[2] else ''}", file=sys.stderr)
    return best[2]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefer-hidden", type=int, default=None)
    ap.add_argument("--margin", type=float, default=0.0)
    ap.add_argument("paths", nargs="+")
    a = ap.parse_args(argv)
    print(pick(a.paths, a.prefer_hidden, a.margin))


if __name__ == "__main__":
    main()

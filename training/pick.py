"""Print the trained artifact to build on: the highest dev accuracy, preferring a hidden size.

  python -m training.pick --prefer-hidden 100 --margin 0.01 RUNS/sst2-lstm-* models/sst2-lstm
  python -m training.pick --by perplexity RUNS/imdb-lm-*          # language models: lowest dev perplexity
  python -m training.pick --top 2 RUNS/imdb-skim-*                # the best two, one per line
A model of another hidden size is picked only when its dev accuracy beats the best model of the
preferred size by at least --margin (the serving cost grows with d). Ties in dev accuracy go to the higher
dev skim rate (as training/publish.py). Dev split only, never test.
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


def candidates(paths, by: str = "accuracy") -> list[dict]:
    """The artifacts among paths, best first: by dev accuracy (ties to the higher dev skim rate) or by the
    lowest dev perplexity (language models). Folders without a manifest (a run that died) are left out."""
    cands = []
    for p in map(Path, paths):
        if (p / "manifest.json").is_file():
            m = read_manifest(p)
            t = m["training"]
            score = -(t.get("dev_perplexity") or float("inf")) if by == "perplexity" else t["dev_accuracy"] or 0.0
            cands.append({"dev_accuracy": score, "skim": t.get("dev_skim_rate") or 0.0,
                          "hidden": m["sizes"]["hidden"], "path": p})
    if not cands:
        raise SystemExit("no artifacts among: " + " ".join(map(str, paths)))
    return sorted(cands, key=lambda c: (-c["dev_accuracy"], -c["skim"]))


def pick(paths, prefer_hidden: int | None = None, margin: float = 0.0, by: str = "accuracy", top: int = 1) -> list[Path]:
    cands = candidates(paths, by)
    best = prefer_size(cands, prefer_hidden, margin)
    ranked = [best] + [c for c in cands if c is not best]
    for c in cands:
        shown = f"ppl={-c['dev_accuracy']:.1f}" if by == "perplexity" else f"{c['dev_accuracy']:.4f} skim={c['skim']:.3f}"
        print(f"{shown} d={c['hidden']} {c['path']}{'  <- picked' if c in ranked[:top] else ''}", file=sys.stderr)
    return [c["path"] for c in ranked[:top]]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefer-hidden", type=int, default=None)
    ap.add_argument("--margin", type=float, default=0.0)
    ap.add_argument("--by", choices=["accuracy", "perplexity"], default="accuracy")
    ap.add_argument("--top", type=int, default=1, help="print the best N, one per line")
    ap.add_argument("paths", nargs="+")
    a = ap.parse_args(argv)
    print("\n".join(map(str, pick(a.paths, a.prefer_hidden, a.margin, a.by, a.top))))


if __name__ == "__main__":
    main()

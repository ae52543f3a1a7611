"""Publish the best of several trained variants as a served model (selection by dev split only).

  python -m training.publish --name sst2-skim --min-dev-skim 0.5 RUNS/sst2-skim-*
Picks the variant with the highest dev accuracy among those whose dev skim rate reaches
--min-dev-skim (ties: the higher skim rate; a folder with only a manifest is listed but not eligible), copies it to models/NAME, records every candidate in the manifest, re-signs it.

  python -m training.publish --name sst2-skim --incumbent --min-dev-skim 0.5 RUNS/sst2-skim-*
--incumbent: the model now published as NAME competes too, under the variant name it was chosen as, and
keeps its place on an exact tie; the candidates of its own selection are kept in the new record
(selection.earlier).
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from service.artifacts import MANIFEST, read_manifest, refresh_checksums

from .pick import prefer_size


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    p.add_argument("--out-dir", default="models")
    p.add_argument("--min-dev-skim", type=float, default=0.0)
    p.add_argument("--prefer-hidden", type=int, default=None,
                   help="pick another hidden size only if it beats the best of this size by --margin on dev")
    p.add_argument("--margin", type=float, default=0.0)
    p.add_argument("--note", default=None, help="free text kept in the selection record")
    p.add_argument("--incumbent", action="store_true", help="the model published now as NAME competes too")
    p.add_argument("variants", nargs="+", help="artifact folders (a folder with only manifest.json is listed, "
                                               "as a candidate that was not kept, and cannot be chosen)")
    args = p.parse_args(argv)
    dest = Path(args.out_dir) / args.name
    with tempfile.TemporaryDirectory() as tmp:
        publish(args, dest, Path(tmp))


def candidate(folder: Path, variant: str | None = None) -> dict:
    m = read_manifest(folder)
    t = m["training"]
    return {"variant": variant or m["name"], "dev_accuracy": t["dev_accuracy"], "dev_skim_rate": t["dev_skim_rate"],
            "hidden": m["sizes"]["hidden"], "command": t["command"], "path": folder,
            "kept": (folder / "weights.npz").is_file()}


def publish(args, dest: Path, tmp: Path) -> None:
    cands, earlier = [], None
    if args.incumbent and (dest / MANIFEST).is_file():
        held = tmp / "incumbent"  # dest is replaced below: compete from a copy
        shutil.copytree(dest, held)
        sel = read_manifest(held).get("selection") or {}
        cands.append(candidate(held, sel.get("chosen")))
        earlier = {k: sel[k] for k in ("chosen", "rule", "candidates", "note", "earlier") if k in sel}
    cands += [candidate(Path(v)) for v in args.variants]
    kept = [c for c in cands if c["kept"]]
    if not kept:
        raise SystemExit("no candidate has weights here")
    ok = [c for c in kept if c["dev_skim_rate"] >= args.min_dev_skim] or kept
    ok.sort(key=lambda c: -c["dev_skim_rate"])  # equal dev accuracy: the one that skims more (cheaper) wins
    best = prefer_size(ok, args.prefer_hidden, args.margin)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(best["path"], dest)
    m = json.loads((dest / MANIFEST).read_text())
    m["name"] = args.name
    rule = (f"highest dev accuracy among variants with dev skim rate >= {args.min_dev_skim} (ties: the higher skim "
            "rate); variants whose weights did not come back from the GPU machine are listed, not eligible")
    if earlier is not None:
        rule += "; the model published before competed as well and keeps its place on an exact tie"
    if args.prefer_hidden is not None:
        rule += (f"; hidden size {args.prefer_hidden} unless another size is at least {args.margin} better on dev"
                 " (serving cost grows with d)")
    m["selection"] = {"rule": rule, "chosen": best["variant"],
                      "candidates": [{k: c[k] for k in ("variant", "dev_accuracy", "dev_skim_rate", "hidden", "command")}
                                     for c in cands]}
    if args.note:
        m["selection"]["note"] = args.note
    if earlier:
        m["selection"]["earlier"] = earlier
    (dest / MANIFEST).write_text(json.dumps(m, indent=2) + "\n")
    refresh_checksums(dest)
    print(f"published {best['variant']} as {dest} (dev acc {best['dev_accuracy']:.4f}, skim {best['dev_skim_rate']:.3f})")


if __name__ == "__main__":
    main()

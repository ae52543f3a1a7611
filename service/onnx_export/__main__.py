"""python -m service.onnx_export models/<name> [...] | --all [--models-dir models]"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import OPSET, export_artifact


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m service.onnx_export",
                                 description=f"Export skimserve artifacts to ONNX (opset {OPSET}); writes "
                                             "model.onnx into each artifact folder and re-signs its manifest.")
    ap.add_argument("folders", nargs="*", type=Path, help="artifact folders")
    ap.add_argument("--all", action="store_true", help="every artifact folder under --models-dir")
    ap.add_argument("--models-dir", type=Path, default=Path("models"))
    args = ap.parse_args(argv)
    folders = list(args.folders)
    if args.all:
        folders += sorted(p.parent for p in args.models_dir.glob("*/manifest.json"))
    if not folders:
        ap.error("give artifact folders or --all")
    for folder in folders:
        path = export_artifact(folder)
        print(f"{folder}: wrote {path.name} ({path.stat().st_size / 1e6:.1f} MB, opset {OPSET}), manifest re-signed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

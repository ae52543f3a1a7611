"""Dataset splits as token ids of one vocabulary, in one small xz file: what a GPU run carries instead of
the texts (the device machine takes at most 64 MiB with the whole repository; IMDb's texts alone are 26 MB).

  python -m training.encoded_splits --dataset imdb --base models/imdb-lstm --splits train dev \
      --max-len 100 --out .gpu-data/imdb-ids.npz.xz
  python -m training.train_antman ... --encoded .gpu-data/imdb-ids.npz.xz

Each split: ids (uint16, all examples concatenated), offsets (int64, n+1) and labels (int64). The file names
the vocabulary by its SHA-256 (the base model's vocab.txt), so a run over another vocabulary stops. With
--max-len N only each text's last N tokens are kept (what training/train.py's --max-len keeps).
"""
from __future__ import annotations

import argparse
import io
import json
import lzma
from pathlib import Path

import numpy as np

from service.artifacts import load_artifact


def write(path: str | Path, splits: dict[str, list[tuple[list[int], int]]], meta: dict) -> None:
    arrays = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    for name, enc in splits.items():
        ids = [np.asarray(x, dtype=np.int64) for x, _ in enc]
        flat = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        if flat.size and flat.max() >= 2 ** 16:
            raise ValueError("vocabulary larger than uint16")
        arrays[f"{name}.ids"] = flat.astype(np.uint16)
        arrays[f"{name}.offsets"] = np.cumsum([0] + [len(x) for x in ids]).astype(np.int64)
        arrays[f"{name}.labels"] = np.asarray([y for _, y in enc], dtype=np.int64)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(lzma.compress(buf.getvalue(), preset=9))


def read(path: str | Path) -> tuple[dict, dict[str, list[tuple[list[int], int]]]]:
    """(meta, split name -> [(token ids, label)]) as training/train.py's encode returns them."""
    with np.load(io.BytesIO(lzma.decompress(Path(path).read_bytes())), allow_pickle=False) as z:
        meta = json.loads(z["meta"].tobytes().decode())
        splits = {}
        for name in meta["splits"]:
            ids, off, labels = z[f"{name}.ids"].astype(np.int64), z[f"{name}.offsets"], z[f"{name}.labels"]
            splits[name] = [(ids[off[i]:off[i + 1]].tolist(), int(labels[i])) for i in range(len(labels))]
    return meta, splits


def main(argv=None):
    from . import data
    from .train import encode

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, choices=sorted(data.LOADERS))
    p.add_argument("--base", required=True, help="the model whose vocabulary encodes the texts")
    p.add_argument("--splits", nargs="+", default=["train", "dev"])
    p.add_argument("--max-len", type=int, default=0, help="keep each text's last N tokens; 0 = all")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    base = load_artifact(args.base)
    index = {w: i for i, w in enumerate(base.vocab)}
    splits = {s: encode(data.load(args.dataset, s, args.data_dir), index, args.max_len) for s in args.splits}
    meta = {"dataset": args.dataset, "splits": list(splits), "max_len": args.max_len,
            "counts": {s: len(v) for s, v in splits.items()}, "base": base.manifest["name"],
            "vocab_sha256": base.manifest["files"]["vocab.txt"], "split_seed": data.SPLIT_SEED}
    write(args.out, splits, meta)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size} bytes): {meta['counts']}")


if __name__ == "__main__":
    main()

"""Record what the shipped classifiers answer on the test splits, with whatever `service` is importable:
    python tests/golden/record.py OUT_DIR [--models-dir models]
tests/test_golden_outputs.py compares today's code against the file this wrote before the task/cell split
(run from a checkout of commit 90c1cb6, the last commit before it), so a refactor that changes any label,
decision or cost fails. IMDb: the first 2,000 test reviews (the file stays small); SST-2 and MR: all."""
from __future__ import annotations

import argparse
import os
import sys
import zlib
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

MODELS = ("sst2-lstm", "sst2-skim", "mr-lstm", "mr-skim", "imdb-lstm", "imdb-skim")
LIMIT = {"imdb": 2000}
THRESHOLDS = (0.5, 0.3, 1.0)


def record(model, texts) -> dict[str, np.ndarray]:
    from service.tokenizer import tokenize

    ids = [model.to_ids(tokenize(t)) for t in texts]
    out = {}
    for thr in THRESHOLDS:
        key = f"t{thr}"
        logits, skimmed, flops, masks = [], [], [], []
        for i in ids:
            lg, lo = model.forward(i, thr)
            logits.append(np.asarray(lg, np.float32))
            skimmed.append(lo.skimmed)
            flops.append(model.layer_cost(lo).flops)
            masks.append(zlib.crc32(np.packbits(lo.skim.astype(np.uint8)).tobytes()) ^ len(i))
        out[f"{key}.logits"] = np.stack(logits)
        out[f"{key}.skimmed"] = np.array(skimmed, np.int32)
        out[f"{key}.flops"] = np.array(flops, np.int64)
        out[f"{key}.mask_crc"] = np.array(masks, np.uint32)
    return out


def texts_of(dataset: str) -> list[str]:
    from training import data

    return [ex.text for ex in data.load(dataset, "test", limit=LIMIT.get(dataset))]


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("out_dir")
    p.add_argument("--models-dir", default="models")
    p.add_argument("--kernel", default="fast")
    args = p.parse_args(argv)
    from service.artifacts import load_artifact
    from service.families import build_model

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in MODELS:
        model = build_model(load_artifact(Path(args.models_dir) / name), kernel=args.kernel)
        arrays = record(model, texts_of(name.split("-")[0]))
        np.savez_compressed(out_dir / f"{name}.npz", **arrays)
        print(name, {k: v.shape for k, v in arrays.items() if k.endswith("skimmed")}, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Label a transfer set with a teacher ensemble's soft predictions, for distillation (train.py --distill).

  python -m training.teacher_labels --dataset sst2 --texts runs/transfer/imdb-sentences.jsonl.gz \
      --out runs/transfer/sst2-teachers.jsonl.gz runs/teachers/sst2-t7-s*

Each teacher is a trained classify artifact (LSTM, or Skim-LSTM at its default threshold), run in PyTorch on
the same weights the runtime serves. The ensemble's label of a text is the mean of the teachers' class
probabilities. The output's first line is {"meta": ...}: the teachers (name, weights SHA-256, dev accuracy),
the ensemble's dev accuracy, and the transfer set's SHA-256, so a student's manifest can say what taught it.
Only the dev split is scored here; test is never read.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from service.artifacts import load_artifact
from service.tokenizer import tokenize

from . import data
from .encoding import padded, token_ids
from .torch_models import from_artifact


def read_texts(path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return [r["text"] for r in rows if "text" in r]


def read_labelled(path) -> tuple[dict, list[str], np.ndarray]:
    """(meta, texts, probs (N, labels)) of a file written by this module."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        first = json.loads(f.readline())
        if "meta" not in first:
            raise ValueError(f"{path}: not a teacher-labelled set (no meta line); see training/teacher_labels.py")
        rows = [json.loads(line) for line in f]
    probs = np.asarray([r["probs"] for r in rows], dtype=np.float32).reshape(len(rows), -1 if rows else 0)
    if len(rows) != first["meta"]["sentences"]:
        raise ValueError(f"{path}: {len(rows)} rows against the {first['meta']['sentences']} its meta line states")
    return first["meta"], [r["text"] for r in rows], probs


@torch.no_grad()
def predict(artifact, tokens: list[list[str]], device, batch_size: int = 512, desc: str | None = None) -> np.ndarray:
    """Class probabilities (N, labels) of one artifact on tokenized texts, in their order (batched by length)."""
    model = from_artifact(artifact).to(device)
    index = {w: i for i, w in enumerate(artifact.vocab)}
    ids = [token_ids(toks, index) for toks in tokens]
    threshold = float(artifact.manifest.get("default_threshold", 0.5))
    out = np.zeros((len(ids), len(artifact.manifest["labels"])), dtype=np.float32)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    starts = range(0, len(order), batch_size)
    for s in tqdm(starts, desc=desc, mininterval=5, disable=desc is None):
        b = order[s:s + batch_size]
        x, lengths = padded([ids[i] for i in b])
        logits, _ = model(x.to(device), lengths.to(device), threshold=threshold)
        out[b] = torch.softmax(logits.float(), -1).cpu().numpy()
    return out


def accuracy(probs: np.ndarray, labels) -> float:
    return float((probs.argmax(-1) == np.asarray(labels)).mean())


def write_labelled(out, dataset: str, teachers: list[dict], texts_file, texts: list[str], probs: np.ndarray,
                   dev_probs: np.ndarray, dev_labels, **extra) -> dict:
    """Write the ensemble's labels in the format read_labelled reads (the meta line first); returns the meta.
    `extra` adds fields to the meta (e.g. where the teachers came from)."""
    meta = {"dataset": dataset, "teachers": teachers, "ensemble": "mean of the teachers' probabilities",
            "ensemble_dev_accuracy": round(accuracy(dev_probs, dev_labels), 4),
            "texts": Path(texts_file).name, "texts_sha256": hashlib.sha256(Path(texts_file).read_bytes()).hexdigest(),
            "sentences": len(texts), "mean_confidence": round(float(probs.max(-1).mean()), 4), **extra}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(out, "wt", encoding="utf-8") as f:
        f.write(json.dumps({"meta": meta}) + "\n")
        for s, pr in zip(texts, probs):
            f.write(json.dumps({"text": s, "probs": [round(float(v), 5) for v in pr]}) + "\n")
    print(f"wrote {out}: {len(texts)} sentences, ensemble of {len(teachers)} dev {meta['ensemble_dev_accuracy']:.4f}")
    return meta


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("teachers", nargs="+", help="classify artifact folders")
    p.add_argument("--dataset", required=True, choices=sorted(data.LOADERS), help="the teachers' task, for dev scores")
    p.add_argument("--texts", required=True, help="a transfer set (training/transfer_set.py)")
    p.add_argument("--out", required=True)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    texts = read_texts(args.texts)
    if not texts:
        raise SystemExit(f"{args.texts}: no texts")
    dev = data.load(args.dataset, "dev", args.data_dir)
    # tokenized once here, not once per teacher (the vocabularies differ, the tokens do not)
    dev_tokens, dev_labels = [tokenize(ex.text) for ex in dev], [ex.label for ex in dev]
    tokens = [tokenize(s) for s in texts]
    device = torch.device(args.device)
    total, dev_total, teachers = None, None, []
    for path in args.teachers:
        art = load_artifact(path)
        if art.manifest["task"] != "classify" or art.manifest["training"].get("dataset") != args.dataset:
            raise SystemExit(f"{path}: not a {args.dataset} classifier")
        dev_p = predict(art, dev_tokens, device)
        probs = predict(art, tokens, device, desc=art.manifest["name"])
        total = probs if total is None else total + probs
        dev_total = dev_p if dev_total is None else dev_total + dev_p
        teachers.append({"name": art.manifest["name"], "family": art.manifest["family"],
                         "weights_sha256": art.manifest["files"]["weights.npz"],
                         "dev_accuracy": round(accuracy(dev_p, dev_labels), 4)})
        print(f"teacher {art.manifest['name']}: dev {teachers[-1]['dev_accuracy']:.4f}", flush=True)
    write_labelled(args.out, args.dataset, teachers, args.texts, texts, total / len(teachers),
                   dev_total / len(teachers), dev_labels)


if __name__ == "__main__":
    main()

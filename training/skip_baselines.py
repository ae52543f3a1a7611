"""The two naive skipping baselines of the note (../shared/papers/skip-steps-without-retraining.txt, Table 1),
on the frozen dense LSTMs: stop-word removal, and Concat(n) (keep only the first n and the last n tokens).

  python -m training.skip_baselines [--models sst2-lstm imdb-lstm] [--splits dev test] [--data-dir DIR]

The unmodified LSTM reads the kept tokens (tokenized as the model was trained: train.encode); accuracy, the
fraction of tokens removed, and FLOPs via service/flops.py (the LSTM on the kept tokens + the head, against
the LSTM on all tokens + the head; no predictor cost: the filter is free).  Writes
benchmarks/results/skip_baselines.json and .md.  One core (OMP/MKL threads 1, as training/evaluate.py).
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from service import flops as F  # noqa: E402

from . import data  # noqa: E402
from .runlog import command_line  # noqa: E402
from .skip_predictor import _kernel, embed, encode_texts, load_base  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "skip_baselines"
CONCAT_N = (1, 2, 3, 5, 10, 25, 50, 100)

# The stop-word list (a fixed, stated list: NLTK's English stop words, minus the negations and the words that
# carry sentiment in reviews: no, nor, not, n't and the negated auxiliaries, very, too, only, against, most,
# more, few, but), plus the tokenizer's punctuation tokens.
STOP_WORDS = frozenset("""
i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers
herself it its itself they them their theirs themselves what which who whom this that these those am is are
was were be been being have has had having do does did doing a an the and if or because as until while of at
by for with about between into through during before after above below to from up down in out on off over
under again further then once here there when where why how all any both each other some such own same so
than s t can will just don should now d ll m o re ve y 's 're 've 'd 'll 'm
. , ; : -- - ` `` '' ' " ( ) -lrb- -rrb- ... /
""".split())


def stop_filter(ids: np.ndarray, vocab: list[str]) -> np.ndarray:
    keep = np.array([vocab[i] not in STOP_WORDS for i in ids], bool)
    return ids[keep]


def concat_filter(ids: np.ndarray, n: int) -> np.ndarray:
    return ids if len(ids) <= 2 * n else np.concatenate([ids[:n], ids[-n:]])


def run(base, seqs, labels, kernel) -> dict:
    e, d = base.e, base.d
    head = F.head_flops(d, len(base.head_b))
    correct = tokens = 0
    flops = 0
    for ids, y in zip(seqs, labels):
        if len(ids):
            out = kernel.run_layer(base.layer, embed(base, ids), 1.0)
            h = out.hs[-1]
        else:
            h = np.zeros(d, np.float32)
        correct += int(np.argmax(base.head_W @ h + base.head_b) == y)
        tokens += len(ids)
        flops += len(ids) * F.read_flops(e, d) + head
    return {"accuracy": correct / len(labels), "tokens": tokens, "flops": flops}


def evaluate_model(folder: Path, dataset: str | None, split: str, data_dir, limit) -> list[dict]:
    base = load_base(folder)
    dataset = dataset or base.dataset
    ex = data.load(dataset, split, data_dir, limit)
    seqs, labels = encode_texts(base, ex)
    kern = _kernel()
    variants = [("full", "full model", seqs), ("stop-words", "stop-word removal", [stop_filter(s, base.vocab) for s in seqs])]
    variants += [(f"concat-{n}", f"Concat({n}): first {n} + last {n}", [concat_filter(s, n) for s in seqs]) for n in CONCAT_N]
    rows, full = [], None
    for key, what, sq in variants:
        r = run(base, sq, labels, kern)
        if full is None:
            full = r
        rows.append({"model": base.manifest["name"], "dataset": dataset, "split": split, "method": key,
                     "description": what, "examples": len(labels), "accuracy": round(r["accuracy"], 6),
                     "accuracy_change_points": round(100 * (r["accuracy"] - full["accuracy"]), 3),
                     "tokens_removed": round(1 - r["tokens"] / full["tokens"], 6),
                     "flops_saved": round(1 - r["flops"] / full["flops"], 6),
                     "flop_reduction": round(full["flops"] / r["flops"], 4)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def write_md(rows: list[dict], path: Path, command: str) -> None:
    lines = ["# Naive skipping baselines on the frozen LSTMs", "",
             f"`{command}` (training/skip_baselines.py). The unmodified dense LSTM reads only the kept tokens; "
             "FLOPs from service/flops.py (the LSTM on the kept tokens + the head vs on all tokens + the head). "
             "Stop words: the list stated in training/skip_baselines.py.", "",
             "| model | split | method | accuracy % | change (points) | tokens removed % | FLOPs saved % | FLOP reduction |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['split']} | {r['description']} | {100 * r['accuracy']:.2f} | "
                     f"{r['accuracy_change_points']:+.2f} | {100 * r['tokens_removed']:.1f} | "
                     f"{100 * r['flops_saved']:.1f} | {r['flop_reduction']:.2f}x |")
    path.write_text("\n".join(lines) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["sst2-lstm", "imdb-lstm"])
    ap.add_argument("--models-dir", default=str(ROOT / "models"))
    ap.add_argument("--splits", nargs="+", default=["dev", "test"])
    ap.add_argument("--data-dir")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--out", default=str(OUT), help="output path without extension (.json and .md are written)")
    args = ap.parse_args(argv)
    t0 = time.time()
    rows = []
    for name in args.models:
        for split in args.splits:
            rows += evaluate_model(Path(args.models_dir) / name, None, split, args.data_dir, args.limit)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = command_line("training.skip_baselines", argv)
    out.with_suffix(".json").write_text(json.dumps({"command": cmd, "stop_words": sorted(STOP_WORDS),
                                                    "concat_n": list(CONCAT_N), "seconds": round(time.time() - t0, 1),
                                                    "rows": rows}, indent=1) + "\n")
    write_md(rows, out.with_suffix(".md"), cmd)
    return rows


if __name__ == "__main__":
    main()

"""Write the part of GloVe 6B 50d that the vocabularies of some datasets need, for a machine without the
GloVe package (e.g. a GPU machine: the folder travels with the code, ~8 MB instead of 80).

  python -m training.glove_subset --out .carry/glove sst2 mr imdb
  SKIMSERVE_GLOVE_SUBSET=.carry/glove python -m training.train ...

The subset keeps GloVe's order and holds the top 20,000 words (training/vocab.py appends those) and every
word of each dataset's vocabulary, so build_vocab gives identical vocabularies and rows from it (checked
here for each dataset before writing).

  python -m training.glove_subset --out .carry/glove-ext --for-extending runs/imdb-lm-lstm sst2 mr
writes only the rows that extending that artifact's vocabulary with each dataset's training words needs
(training/vocab.py extend_vocab, used by train.py --init-from across datasets): far smaller.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from service.artifacts import load_artifact
from service.tokenizer import tokenize

from . import data
from .vocab import GLOVE_SUBSET_ENV, build_vocab, extend_vocab, load_glove


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("datasets", nargs="+", choices=sorted(data.LOADERS))
    p.add_argument("--out", required=True)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--top", type=int, default=20000)
    p.add_argument("--for-extending", default=None, metavar="ARTIFACT",
                   help="only the training words that ARTIFACT's vocabulary lacks (enough for extend_vocab)")
    args = p.parse_args(argv)
    os.environ.pop(GLOVE_SUBSET_ENV, None)
    words, glove = load_glove()
    texts = {ds: [ex.text for ex in data.load(ds, "train", args.data_dir)] for ds in args.datasets}
    if args.for_extending:
        base = load_artifact(args.for_extending)
        build = lambda t: extend_vocab(base.vocab, base.weights["embedding"], t)  # noqa: E731
        need = {t for ts in texts.values() for text in ts for t in tokenize(text)} - set(base.vocab)
        what = f"extending {base.name} with "
    else:
        build, need, what = build_vocab, set(words[:args.top]), ""
    built = {ds: build(t) for ds, t in texts.items()}
    if not args.for_extending:
        for vocab, _, _ in built.values():
            need.update(vocab)
    keep = [i for i, w in enumerate(words) if w in need]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "words.txt").write_text("\n".join(words[i] for i in keep) + "\n", encoding="utf-8")
    np.save(out / "emb.npy", glove[keep])
    os.environ[GLOVE_SUBSET_ENV] = str(out)
    for ds, (vocab, emb, stats) in built.items():
        v2, e2, s2 = build(texts[ds])
        assert v2 == vocab and np.array_equal(e2, emb) and s2 == stats, f"subset does not reproduce {ds}"
    print(f"wrote {out}: {len(keep)} of {len(words)} GloVe words; reproduces {what}{', '.join(args.datasets)}")


if __name__ == "__main__":
    main()

"""Build a transfer set for distillation: unlabelled sentences from another dataset's training text.

  python -m training.transfer_set --source imdb --out runs/transfer/imdb-sentences.jsonl.gz --max 250000

A student distilled from a teacher learns from the teacher's soft labels on many more inputs than the
target's own training split (6,920 sentences for SST-2). IMDb's training reviews are movie reviews like
SST-2's, from another site (imdb.com, not Rotten Tomatoes), so no SST-2/MR sentence can appear in them; their
labels are never read. Sentences are split on end punctuation, tokenized with the serving tokenizer, kept
at min-tokens..max-tokens tokens, de-duplicated, shuffled with a fixed seed and capped. One JSON object per
line: {"text": ...}.
"""
from __future__ import annotations

import argparse
import gzip
import json
import random
import re
from pathlib import Path

from tqdm import tqdm

from service.tokenizer import tokenize

from . import data

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|<br\s*/?>")


def sentences(text: str) -> list[str]:
    """A review split into sentences (end punctuation followed by space, or an HTML line break)."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def build(texts, min_tokens: int, max_tokens: int, cap: int, seed: int) -> list[str]:
    seen, out = set(), []
    for text in texts:
        for s in sentences(text):
            toks = tokenize(s)
            if not min_tokens <= len(toks) <= max_tokens:
                continue
            key = " ".join(toks)
            if key not in seen:
                seen.add(key)
                out.append(s)
    random.Random(seed).shuffle(out)
    return out[:cap] if cap else out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default="imdb", choices=["imdb"], help="whose training split gives the text")
    p.add_argument("--out", required=True)
    p.add_argument("--data-dir", default=None, help="default: $SKIMSERVE_DATA or ../shared/data")
    p.add_argument("--max", type=int, default=250000, help="at most N sentences (0 = all)")
    p.add_argument("--min-tokens", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=50)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    if args.min_tokens < 1 or args.max_tokens < args.min_tokens:
        raise SystemExit("need 1 <= --min-tokens <= --max-tokens")
    reviews = data.load(args.source, "train", args.data_dir)
    texts = tqdm((ex.text for ex in reviews), total=len(reviews), desc="reviews", mininterval=5)
    out = build(texts, args.min_tokens, args.max_tokens, args.max, args.seed)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(args.out, "wt", encoding="utf-8") as f:
        for s in out:
            f.write(json.dumps({"text": s}) + "\n")
    print(f"wrote {args.out}: {len(out)} sentences from {len(reviews)} {args.source} training texts")


if __name__ == "__main__":
    main()

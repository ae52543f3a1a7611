"""Dataset loaders (no PyTorch). The data directory comes from --data-dir, else $SKIMSERVE_DATA,
else ../shared/data relative to the project root.

Splits:
  sst2  train/dev/test files as given (6,920 / 872 / 1,821).
  mr    no official split: a fixed seeded 80/10/10 split (seed 13) of the 10,662 sentences.
  imdb  train 25,000 / test 25,000; dev = the reviews of train whose number (the `id` suffix, the file
        number of the original aclImdb release) is 11,250 or more in each class: 1,250 positive + 1,250
        negative held out of train, so early stopping never looks at the test split. A block, not a random
        sample: aclImdb numbers the reviews of one movie consecutively (train_pos_0..2 are all "Bromwell
        High"), and its test movies are disjoint from its train movies, so a random 10% shares movies with
        the rest of train and overstated test accuracy by ~3 points (see models/imdb-*/card.md history).
"""
from __future__ import annotations

import gzip
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SPLIT_SEED = 13
LABELS = ["negative", "positive"]


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get("SKIMSERVE_DATA")
    return Path(env) if env else (PROJECT_ROOT.parent / "shared" / "data")


@dataclass
class Example:
    text: str
    label: int


def _sst2(root: Path, split: str) -> list[Example]:
    out = []
    with open(root / "sst2" / f"{split}.txt", encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line:
                label, text = line.split(" ", 1)
                out.append(Example(text, int(label)))
    return out


def _seeded_split(items: list, split: str, dev_frac: float, test_frac: float) -> list:
    items = list(items)
    random.Random(SPLIT_SEED).shuffle(items)
    n = len(items)
    n_test, n_dev = int(round(n * test_frac)), int(round(n * dev_frac))
    parts = {"test": items[:n_test], "dev": items[n_test:n_test + n_dev], "train": items[n_test + n_dev:]}
    return parts[split]


def _mr(root: Path, split: str) -> list[Example]:
    items = []
    for fname, label in (("rt-polarity.neg", 0), ("rt-polarity.pos", 1)):
        with open(root / "mr" / fname, encoding="latin-1") as f:
            items += [Example(line.strip(), label) for line in f if line.strip()]
    return _seeded_split(items, split, 0.1, 0.1)


IMDB_DEV_FROM = 11250  # per class, reviews numbered 11,250..12,499 of train form dev (movie-disjoint block)


def _imdb_rows(root: Path, name: str) -> list[dict]:
    with gzip.open(root / "imdb" / f"{name}.jsonl.gz", "rt", encoding="utf-8") as f:
        return list(map(json.loads, f))


def _imdb(root: Path, split: str) -> list[Example]:
    rows = _imdb_rows(root, "test" if split == "test" else "train")
    if split != "test":
        in_dev = lambda r: int(r["id"].rsplit("_", 1)[1]) >= IMDB_DEV_FROM  # noqa: E731
        rows = [r for r in rows if in_dev(r) == (split == "dev")]
    return [Example(r["text"], int(r["label"])) for r in rows]


LOADERS = {"sst2": _sst2, "mr": _mr, "imdb": _imdb}


def load(dataset: str, split: str, root: str | os.PathLike | None = None, limit: int | None = None) -> list[Example]:
    if dataset not in LOADERS:
        raise ValueError(f"unknown dataset '{dataset}' (known: {sorted(LOADERS)})")
    if split not in ("train", "dev", "test"):
        raise ValueError(f"unknown split '{split}'")
    examples = LOADERS[dataset](data_dir(root), split)
    return examples[:limit] if limit else examples

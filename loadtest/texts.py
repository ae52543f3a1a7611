"""The labelled test texts the load tests send (no Locust import: overload.py's open-loop driver uses them too).
Data dir: training.data's (SKIMSERVE_DATA, else ../shared/data)."""
from __future__ import annotations

import gzip
import json
import os
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _data_root() -> Path:
    try:
        from training.data import data_dir

        return data_dir()
    except Exception:  # noqa: BLE001  (running from a copy without training/)
        env = os.environ.get("SKIMSERVE_DATA")
        return Path(env) if env else ROOT.parent / "shared" / "data"


def _sample(items: list, n: int) -> list:
    items = list(items)
    random.Random(13).shuffle(items)
    return items[:n]


def load_labelled(kind: str, n: int = 400) -> list[tuple[str, int]]:
    """(text, label index) from the test splits: 'short' = SST-2, 'long' = IMDb (training.data's layout)."""
    root = _data_root()
    if kind == "short":
        with open(root / "sst2" / "test.txt", encoding="utf-8") as f:
            rows = [(line.rstrip("\n").split(" ", 1)[1], int(line.split(" ", 1)[0])) for line in f if line.strip()]
    else:
        with gzip.open(root / "imdb" / "test.jsonl.gz", "rt", encoding="utf-8") as f:
            rows = [(d["text"], int(d["label"])) for d in map(json.loads, f)]
    return _sample(rows, n)

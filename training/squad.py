"""SQuAD v1.1 loader for extractive QA (no PyTorch).

Reads our article-level split files (../shared/data/squad/{train,dev,test}.json) and the official
train-v1.1.json / dev-v1.1.json unchanged (same format: data[].paragraphs[].{context, qas[].{id, question,
answers[].{text, answer_start}}}). Contexts are tokenized with the one serving tokenizer
(service.tokenizer.tokenize_with_spans); the answer's token span is the tokens overlapping the answer's
characters [answer_start, answer_start + len(text)), so answers that do not align to token boundaries
(e.g. "1990s" inside "mid-1990s") still get the smallest covering token span.
"""
from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path

from service.tokenizer import Token, normalize, tokenize, tokenize_with_spans

from .data import data_dir

SPLITS = ("train", "dev", "test")


@dataclass
class QAExample:
    id: str
    context: str
    question: str
    answers: list[tuple[str, int]]              # (text, answer_start), every reference answer
    context_tokens: list[Token] = field(default_factory=list, repr=False)
    question_tokens: list[str] = field(default_factory=list, repr=False)
    span: tuple[int, int] | None = None         # token span (first, last) of the first answer; None if unaligned

    @property
    def answer_texts(self) -> list[str]:
        return [a for a, _ in self.answers]


def char_to_token_span(tokens: list[Token], start: int, end: int) -> tuple[int, int] | None:
    """(first, last) token indices of the tokens overlapping characters [start, end), or None."""
    hit = [i for i, t in enumerate(tokens) if t.start < end and t.end > start]
    return (hit[0], hit[-1]) if hit else None


def span_text(context: str, tokens: list[Token], i: int, j: int) -> str:
    """The context text covered by tokens i..j (what a predicted span answers)."""
    return context[tokens[i].start:tokens[j].end]


def split_path(split_or_path: str | Path, root: str | Path | None = None) -> Path:
    """'train'/'dev'/'test' -> <data dir>/squad/<split>.json; anything else is taken as a file path."""
    if str(split_or_path) in SPLITS:
        path = data_dir(root) / "squad" / f"{split_or_path}.json"
        gz = path.with_suffix(".json.gz")  # a gzipped copy (what travels to a training machine)
        return gz if not path.is_file() and gz.is_file() else path
    return Path(split_or_path)


def load_squad(split_or_path: str | Path, root: str | Path | None = None, tokenize_all: bool = True) -> list[QAExample]:
    """Examples of one split file (ours or an official SQuAD v1.1 file), in file order."""
    path = split_path(split_or_path, root)
    with (gzip.open if path.suffix == ".gz" else open)(path, "rt", encoding="utf-8") as f:
        doc = json.load(f)
    out = []
    for article in doc["data"]:
        for para in article["paragraphs"]:
            context = normalize(para["context"])
            ctoks = tokenize_with_spans(context) if tokenize_all else []
            for qa in para["qas"]:
                answers = [(a["text"], int(a["answer_start"])) for a in qa.get("answers", [])]
                ex = QAExample(qa["id"], context, qa["question"], answers, ctoks)
                if tokenize_all:
                    ex.question_tokens = tokenize(qa["question"])
                    if answers:
                        text, s = answers[0]
                        ex.span = char_to_token_span(ctoks, s, s + len(text))
                out.append(ex)
    return out


def best_span(start_logits, end_logits, max_answer_tokens: int = 15) -> tuple[int, int]:
    """The (i, j), i <= j < i + max_answer_tokens, maximising start[i] + end[j] (numpy or lists; first max wins)."""
    import numpy as np

    s = np.asarray(start_logits, np.float64)
    e = np.asarray(end_logits, np.float64)
    T = len(s)
    scores = s[:, None] + e[None, :]
    i_idx, j_idx = np.indices((T, T))
    ok = (j_idx >= i_idx) & (j_idx < i_idx + max_answer_tokens)
    scores = np.where(ok, scores, -np.inf)
    flat = int(np.argmax(scores))
    return flat // T, flat % T

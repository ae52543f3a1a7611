"""The official SQuAD v1.1 evaluation (EM and F1), as in the official evaluate-v1.1.py script:
normalize_answer lower-cases, removes punctuation, removes the articles a/an/the and folds whitespace;
each prediction scores the max over its reference answers; the averages are in percent."""
from __future__ import annotations

import re
import string
from collections import Counter

_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def f1_score(prediction: str, ground_truth: str) -> float:
    p = normalize_answer(prediction).split()
    g = normalize_answer(ground_truth).split()
    common = Counter(p) & Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def exact_match_score(prediction: str, ground_truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def metric_max_over_ground_truths(fn, prediction: str, ground_truths: list[str]) -> float:
    return max(fn(prediction, g) for g in ground_truths)


def evaluate(predictions: dict[str, str], references: dict[str, list[str]]) -> dict[str, float]:
    """predictions: id -> answer text; references: id -> reference answer texts. Every reference id is scored
    (a missing prediction scores 0, as the official script). Returns {"exact_match", "f1"} in percent."""
    em = f1 = 0.0
    for qid, truths in references.items():
        if qid not in predictions:
            continue
        em += metric_max_over_ground_truths(exact_match_score, predictions[qid], truths)
        f1 += metric_max_over_ground_truths(f1_score, predictions[qid], truths)
    n = len(references)
    return {"exact_match": 100.0 * em / n if n else 0.0, "f1": 100.0 * f1 / n if n else 0.0}

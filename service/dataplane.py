"""The request path without HTTP: check texts, tokenize, run the model, turn results into response dicts
and metrics. service/api/ (the transport) calls these; tests and other transports can call them directly.

Path of one request: api/routes.py -> dataplane.py (here) -> families/classifier.py -> engine/.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import metrics
from .families.classifier import ClassifyResult
from .tokenizer import Token


class InputError(ValueError):
    """A request the client must change: carries the HTTP status and a stable machine-readable code."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Limits:
    max_text_bytes: int
    max_tokens: int
    max_batch: int


def check_texts(texts: list[str], limits: Limits) -> None:
    """Cheap checks, done on the event loop before any model work is queued."""
    if not texts:
        raise InputError(422, "empty_batch", "'texts' must hold at least one text")
    if len(texts) > limits.max_batch:
        raise InputError(413, "batch_too_large", f"{len(texts)} texts in one request; the limit is {limits.max_batch}")
    for i, text in enumerate(texts):
        where = f"texts[{i}]" if len(texts) > 1 else "text"
        try:
            n_bytes = len(text.encode("utf-8"))
        except UnicodeEncodeError:  # a lone surrogate from a JSON \ud800 escape: not Unicode text
            raise InputError(400, "invalid_text", f"{where} is not valid Unicode (lone surrogate)") from None
        if n_bytes > limits.max_text_bytes:
            raise InputError(413, "text_too_large",
                             f"{where} is {n_bytes} bytes (UTF-8); the limit is {limits.max_text_bytes}")
        if not text.strip():
            raise InputError(422, "empty_text", f"{where} is empty or only whitespace")


def tokenize_all(model, texts: list[str], limits: Limits) -> list[list[Token]]:
    out = []
    for i, text in enumerate(texts):
        where = f"texts[{i}]" if len(texts) > 1 else "text"
        tokens = model.tokenize(text)
        if len(tokens) > limits.max_tokens:
            raise InputError(413, "too_many_tokens",
                             f"{where} has {len(tokens)} tokens; the limit is {limits.max_tokens}")
        if not tokens:
            raise InputError(422, "empty_text", f"{where} has no tokens")
        out.append(tokens)
    return out


def result_dict(r: ClassifyResult, explain: bool) -> dict:
    c = r.cost
    d = {"label": r.label, "probabilities": r.probabilities, "tokens": c.tokens, "skimmed": c.skimmed,
         "skim_rate": c.skim_rate, "flops": c.flops, "flops_full": c.flops_full,
         "flop_reduction": c.flop_reduction, "latency_ms": c.latency_ms, "per_token_us": c.per_token_us}
    if explain:
        d["explanation"] = [
            {"token": t.text, "start": t.start, "end": t.end, "decision": "skim" if s else "read", "p_skim": float(p)}
            for t, s, p in zip(r.tokens, r.layer.skim.tolist(), r.layer.p_skim.tolist())]
    return d


def classify_texts(model, texts: list[str], threshold: float, explain: bool, limits: Limits) -> list[dict]:
    """CPU-bound: runs on a pool thread. Every text is tokenized and checked before any is classified,
    so a rejected batch costs no model time and records no metrics."""
    tokenized = tokenize_all(model, texts, limits)
    results = [model.classify_tokens(tokens, threshold) for tokens in tokenized]
    metrics.record_threshold(model.name, threshold)
    for r in results:
        metrics.record_classification(model.name, r.cost)
    return [result_dict(r, explain) for r in results]

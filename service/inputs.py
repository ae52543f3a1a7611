"""Input checks every task shares: the client-error type and the text limits (bytes, tokens, batch)."""
from __future__ import annotations

from dataclasses import dataclass

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
    max_answer_tokens: int = 15


def check_batch(n: int, limits: Limits, what: str = "texts") -> None:
    if n < 1:
        raise InputError(422, "empty_batch", f"'{what}' must hold at least one item")
    if n > limits.max_batch:
        raise InputError(413, "batch_too_large", f"{n} items in one request; the limit is {limits.max_batch}")


def check_text(text: str, limits: Limits, where: str) -> None:
    try:
        n_bytes = len(text) if text.isascii() else len(text.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate from a JSON \ud800 escape: not Unicode text
        raise InputError(400, "invalid_text", f"{where} is not valid Unicode (lone surrogate)") from None
    if n_bytes > limits.max_text_bytes:
        raise InputError(413, "text_too_large", f"{where} is {n_bytes} bytes (UTF-8); the limit is {limits.max_text_bytes}")
    if not text or text.isspace():  # (= not text.strip(), without the copy)
        raise InputError(422, "empty_text", f"{where} is empty or only whitespace")


def check_texts(texts: list[str], limits: Limits, single: str = "text", batch: str = "texts") -> None:
    """Cheap checks, done on the event loop before any model work is queued."""
    check_batch(len(texts), limits, batch)
    for i, text in enumerate(texts):
        check_text(text, limits, f"{batch}[{i}]" if len(texts) > 1 else single)


def tokenize_checked(model, text: str, limits: Limits, where: str) -> list[Token]:
    tokens = model.tokenize(text)
    if len(tokens) > limits.max_tokens:
        raise InputError(413, "too_many_tokens", f"{where} has {len(tokens)} tokens; the limit is {limits.max_tokens}")
    if not tokens:
        raise InputError(422, "empty_text", f"{where} has no tokens")
    return tokens

"""Extractive QA reader (LSTM+Att, Skim-RNN paper appendix A.1): context and question words share one
embedding; each context word attends over the question's words, a_t = softmax_i(w . [x_t; q_i; x_t * q_i]),
u_t = sum_i a_ti q_i; the stack (two bidirectional layers, any registered cell) reads [x_t; u_t; x_t * u_t];
start and end logits are linear maps of the top layer's states; the answer is the span (i, j),
i <= j < i + max_answer_tokens, with the highest start_i + end_j."""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np

from .. import flops as F
from ..artifacts import Artifact
from ..engine.stack import LayerResult
from ..tokenizer import Token, normalize, tokenize_with_spans
from .base import Cost, ServedModel, stack_cost, timed


@dataclass
class Answer:
    text: str
    start: int                 # character offsets into the context as sent
    end: int
    token_start: int
    token_end: int             # inclusive
    score: float               # p_start(i) * p_end(j)
    tokens: list[Token]        # context tokens, spans into the context as sent
    layers: list[LayerResult]
    cost: Cost
    threshold: float | tuple[float, ...]


def original_offsets(text: str) -> np.ndarray | None:
    """Where each offset of normalize(text) lies in text (len+1 entries), or None when NFC changes nothing.

    NFC works within runs that start at a character of combining class 0, so each run is normalised on
    its own and its offsets mapped to the run's start (a composed character maps to where it began)."""
    norm = normalize(text)
    if norm == text:
        return None
    starts = [i for i, ch in enumerate(text) if unicodedata.combining(ch) == 0] or [0]
    if starts[0] != 0:
        starts.insert(0, 0)
    pieces, where = [], []
    for a, b in zip(starts, starts[1:] + [len(text)]):
        seg = normalize(text[a:b])
        pieces.append(seg)
        # characters of a run map to the run start, except where the run was unchanged (map one to one)
        where.extend(range(a, a + len(seg)) if seg == text[a:b] else [a] * len(seg))
    if "".join(pieces) != norm:  # NFC joined across runs (rare): map proportionally, keeps offsets monotone
        return np.round(np.linspace(0, len(text), len(norm) + 1)).astype(np.int64)
    return np.array(where + [len(text)], np.int64)


def decode_span(start: np.ndarray, end: np.ndarray, max_len: int) -> tuple[int, int, float]:
    """argmax over i <= j < i + max_len of start[i] + end[j] (the first maximum), and p_start * p_end."""
    T = len(start)
    best, bi, bj = -np.inf, 0, 0
    for k in range(min(max_len, T)):  # k = j - i
        scores = start[:T - k] + end[k:]
        i = int(np.argmax(scores))
        if scores[i] > best or (scores[i] == best and i < bi):
            best, bi, bj = float(scores[i]), i, i + k
    ps = np.exp(start - start.max())
    pe = np.exp(end - end.max())
    return bi, bj, float(ps[bi] / ps.sum() * pe[bj] / pe.sum())


class Reader(ServedModel):
    task = "qa"

    def __init__(self, artifact: Artifact, kernel: str = "auto"):
        w = artifact.weights
        e = w["embedding"].shape[1]
        self.att_w = w["att.w"]
        if self.att_w.shape != (3 * e,):
            raise ValueError(f"{artifact.name}: att.w has shape {self.att_w.shape}, expected ({3 * e},)")
        super().__init__(artifact, kernel)
        width = self.stack.output_size
        self.start_w, self.start_b = w["start.w"], w["start.b"]
        self.end_w, self.end_b = w["end.w"], w["end.b"]
        for name, a in (("start.w", self.start_w), ("end.w", self.end_w)):
            if a.shape != (width,):
                raise ValueError(f"{artifact.name}: {name} has shape {a.shape}, the top layer gives {width}")
        self.max_answer_tokens = int(self.manifest.get("max_answer_tokens", 15))

    def input_width(self) -> int:
        return 3 * self.embedding.shape[1]

    def uses_runner(self, kernel: str) -> bool:
        return False  # no whole-model exporter for QA: ONNX Runtime runs it layer by layer

    def tokenize(self, text: str) -> list[Token]:
        """Tokens with spans into the text as sent (the tokenizer's spans are into its NFC form)."""
        tokens = tokenize_with_spans(text)
        where = original_offsets(text)
        if where is None:
            return tokens
        return [Token(t.text, int(where[t.start]), int(where[t.end])) for t in tokens]

    def attend(self, x: np.ndarray, q: np.ndarray) -> np.ndarray:
        e = x.shape[1]
        w1, w2, w3 = self.att_w[:e], self.att_w[e:2 * e], self.att_w[2 * e:]
        scores = (x @ w1)[:, None] + (q @ w2)[None, :] + (x * w3) @ q.T
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        u = (scores / scores.sum(axis=1, keepdims=True)) @ q
        return np.ascontiguousarray(np.concatenate([x, u, x * u], axis=1), dtype=np.float32)

    def extra_flops(self, T: int, J: int) -> int:
        return F.attention_flops(T, J, self.embedding.shape[1]) + F.span_head_flops(T, self.stack.output_size)

    def forward(self, ctx_ids: np.ndarray, q_ids: np.ndarray, threshold,
                budget: float | None = None) -> tuple[np.ndarray, np.ndarray, list]:
        """(start logits (T,), end logits (T,), every layer's result)."""
        x = self.embed(ctx_ids)
        top, results = self.stack.run(self.attend(x, self.embed(q_ids)), threshold, budget)
        return top @ self.start_w + self.start_b[0], top @ self.end_w + self.end_b[0], results

    def answer_tokens(self, context: str, ctx_tokens: list[Token], q_tokens: list[Token], threshold=None,
                      max_answer_tokens: int | None = None, budget: float | None = None) -> Answer:
        threshold = self.default_threshold if threshold is None else threshold
        ids, qids = self.to_ids(ctx_tokens), self.to_ids(q_tokens)
        (start, end, results), seconds = timed(self.forward, ids, qids, threshold, budget)
        i, j, score = decode_span(start, end, max_answer_tokens or self.max_answer_tokens)
        a, b = ctx_tokens[i].start, ctx_tokens[j].end
        cost = stack_cost(results, self.extra_flops(len(ids), len(qids)), seconds)
        return Answer(context[a:b], a, b, i, j, score, ctx_tokens, results, cost, threshold)

    def answer(self, context: str, question: str, threshold=None) -> Answer:
        return self.answer_tokens(context, self.tokenize(context), self.tokenize(question), threshold)

"""The one FLOP formula module: used by the engine, the metrics, the evaluation and the docs.

Conventions (a multiply-add counts as 2 FLOPs), per token, for an LSTM layer with input size e,
hidden size d and small (skim) hidden size d':
  read      8*d*(e+d)   four gate matvecs over [x; h]      + ELEMENTWISE_PER_UNIT*d
  skim      8*d'*(e+d)  small cell's four gate matvecs     + ELEMENTWISE_PER_UNIT*d'
  decision  4*(e+d)     2 x (e+d) matvec, paid on every token of a skim layer
Elementwise work per hidden unit (ELEMENTWISE_PER_UNIT = 10): 4 bias adds, 3 sigmoids, 2 tanhs
and the c/h updates, counted as one FLOP each (a stated convention, not a measurement).
The full-LSTM reference is the read cost on every token, without the decision layer.
The classifier head (2*d*labels) is paid once per request, by both.
Every backend computes exactly these terms (the input projection of the big cell is only
computed on read steps), so the counts are the same whichever backend serves a request.
"""
from __future__ import annotations

from dataclasses import dataclass

ELEMENTWISE_PER_UNIT = 10


def read_flops(e: int, d: int) -> int:
    return 8 * d * (e + d) + ELEMENTWISE_PER_UNIT * d


def skim_flops(e: int, d: int, d_small: int) -> int:
    return 8 * d_small * (e + d) + ELEMENTWISE_PER_UNIT * d_small


def decision_flops(e: int, d: int) -> int:
    return 4 * (e + d)


def head_flops(d: int, n_out: int) -> int:
    return 2 * d * n_out


@dataclass(frozen=True)
class LayerCost:
    """Cost of one recurrent layer (one direction) over one sequence."""

    tokens: int
    skimmed: int
    flops: int
    flops_full: int

    @property
    def skim_rate(self) -> float:
        return self.skimmed / self.tokens if self.tokens else 0.0


def layer_cost(e: int, d: int, d_small: int, tokens: int, skimmed: int, skims: bool) -> LayerCost:
    """skims=False for a plain LSTM layer: no decision layer, every token read."""
    if not 0 <= skimmed <= tokens:
        raise ValueError(f"skimmed={skimmed} outside [0, tokens={tokens}]")
    full = tokens * read_flops(e, d)
    if not skims:
        if skimmed:
            raise ValueError("a plain LSTM layer cannot skim")
        return LayerCost(tokens, 0, full, full)
    flops = (tokens - skimmed) * read_flops(e, d) + skimmed * skim_flops(e, d, d_small) + tokens * decision_flops(e, d)
    return LayerCost(tokens, skimmed, flops, full)


def attention_flops(context_tokens: int, question_tokens: int, e: int) -> int:
    """The LSTM+Att reader's question attention (paid by skim and dense models alike):
    per context word x.w1 and x*w3 (3e) and x*u (e); per question word q.w2 (2e); per pair the bilinear
    term (2e), two adds, a softmax (3: exp, sum, divide) and the weighted sum of q (2e)."""
    T, J = context_tokens, question_tokens
    return T * 4 * e + J * 2 * e + T * J * (4 * e + 5)


def span_head_flops(context_tokens: int, width: int) -> int:
    """Start and end logits: two (width -> 1) linear maps per context token."""
    return context_tokens * 2 * (2 * width + 1)

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
AntMan layers (cells antman-lstm, antman-skim-lstm): the big cell's two products are compression modules
whose multiply-adds are Table 1 of Wang et al. (2019) (the *_macs functions below, for a product of an
m x n matrix); their read step costs 2*(macs(W_ih) + macs(W_hh)) + ELEMENTWISE_PER_UNIT*d, and their
full-LSTM reference (flops_full) is the DENSE teacher's read cost 8*d*(e+d) + ..., so flop_reduction is
measured against the teacher of the same sizes.
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


def dense_macs(m: int, n: int) -> int:
    return m * n


def _exact(num: int, den: int, what: str) -> int:
    if num % den:
        raise ValueError(f"{what}: {num}/{den} is not an integer (groups or rank do not divide the sizes)")
    return num // den


def lgp_shuffle_macs(m: int, n: int, groups: int) -> int:
    """Table 1, LGP-Shuffle: mn/g (the shuffle is a transpose, no arithmetic)."""
    return _exact(m * n, groups, "lgp-shuffle")


def lgp_dense_macs(m: int, n: int, groups: int) -> int:
    """Table 1, LGP-Dense: mn/g + min(m, n)^2."""
    return _exact(m * n, groups, "lgp-dense") + min(m, n) ** 2


def lowrank_lgp_macs(m: int, n: int, groups_in: int, groups_out: int, rank: int) -> int:
    """Table 1, LowRank-LGP: mn/(r g_out) + nn/(r g_in) + n^2/r^2."""
    return (_exact(m * n, rank * groups_out, "lowrank-lgp") + _exact(n * n, rank * groups_in, "lowrank-lgp")
            + _exact(n * n, rank * rank, "lowrank-lgp"))


def module_macs(spec: dict, m: int, n: int) -> int:
    """Table 1 for a module spec in manifest form ({"module": "lgp-shuffle", "groups": 10}, ...)."""
    kind = spec.get("module")
    if kind == "dense":
        return dense_macs(m, n)
    if kind == "lgp-shuffle":
        return lgp_shuffle_macs(m, n, spec["groups"])
    if kind == "lgp-dense":
        return lgp_dense_macs(m, n, spec["groups"])
    if kind == "lowrank-lgp":
        return lowrank_lgp_macs(m, n, spec["groups_in"], spec["groups_out"], spec["rank"])
    raise ValueError(f"unknown module '{kind}'")


def antman_read_flops(d: int, macs_ih: int, macs_hh: int) -> int:
    """A read step of an AntMan big cell: its two module products plus the same elementwise term."""
    return 2 * (macs_ih + macs_hh) + ELEMENTWISE_PER_UNIT * d


def layer_cost(e: int, d: int, d_small: int, tokens: int, skimmed: int, skims: bool,
               read: int | None = None) -> LayerCost:
    """skims=False for a plain LSTM layer: no decision layer, every token read. `read`: the cost of one read
    step when it is not the dense LSTM's (AntMan); flops_full stays the dense LSTM of sizes (e, d)."""
    if not 0 <= skimmed <= tokens:
        raise ValueError(f"skimmed={skimmed} outside [0, tokens={tokens}]")
    full = tokens * read_flops(e, d)
    read = read_flops(e, d) if read is None else read
    if not skims:
        if skimmed:
            raise ValueError("a plain LSTM layer cannot skim")
        return LayerCost(tokens, 0, tokens * read, full)
    flops = (tokens - skimmed) * read + skimmed * skim_flops(e, d, d_small) + tokens * decision_flops(e, d)
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

"""The per-request FLOP budget, enforced inside every layer kernel (the same integer rule on every backend).

A budget b in (0, 1] means: this layer spends at most b times the FLOPs of the full model on this sequence
(service/flops.py: full = every token read, no decision layer). T is known before the loop, so per layer:

    allowance = floor(b * T * read)                       (integers; computed once here, passed to kernels)
    read_cost = read + decision,  skim_cost = skim + decision      (what one step costs, decision included)
    token t is read iff the threshold says read AND
        spent + read_cost + (T - t - 1) * skim_cost <= allowance
    otherwise it is skimmed; spent adds the step's cost.

The cap includes the decision layer (it is paid on every token). The only case it cannot hold is a
budget below the layer's floor, floor = skim_cost / read (every token skimmed): then every token is
skimmed and the layer costs exactly floor * full. So per layer flops <= max(b, floor) * flops_full.
The rule reads "greedily until the budget is spent, then skims the rest": once a read does not fit,
none later does (skimming a step leaves spent + remaining skims unchanged).
A plain LSTM layer cannot skim: a budget < 1 is refused for models without a skim layer (dataplane).
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class LayerBudget:
    allowance: int   # FLOPs this layer may spend on the sequence
    read: int        # one read step, decision included
    skim: int        # one skim (or skip) step, decision included

    def allows_read(self, spent: int, t: int, T: int) -> bool:
        return spent + self.read + (T - t - 1) * self.skim <= self.allowance

    def step(self, skimmed: bool) -> int:
        return self.skim if skimmed else self.read


def check_budget(budget: float | None) -> float | None:
    """None (no budget) or a float in (0, 1]; ValueError otherwise."""
    if budget is None:
        return None
    b = float(budget)
    if not (0.0 < b <= 1.0):  # NaN fails too
        raise ValueError(f"budget {budget!r} outside (0, 1]")
    return b


def layer_budget(cell, w, T: int, budget: float | None) -> LayerBudget | None:
    """The integer rule for one layer over T tokens, or None when nothing is capped (no budget, budget 1,
    or a cell without a decision)."""
    if budget is None or budget >= 1.0 or not cell.skims or T == 0:
        return None
    read = cell.cost(w, 1, 0).flops
    skim = cell.cost(w, 1, 1).flops
    full = cell.cost(w, T, 0).flops_full
    return LayerBudget(int(math.floor(float(budget) * full)), read, skim)


def floor_share(cell, w) -> float:
    """The least share of the full layer's FLOPs a skim layer can spend (every token skimmed, decision paid)."""
    return cell.cost(w, 1, 1).flops / cell.cost(w, 1, 0).flops_full


def apply(decide_read: bool, lb: LayerBudget | None, spent: int, t: int, T: int) -> bool:
    """True when step t is skimmed: the threshold's decision (decide_read False = skim), capped by the budget."""
    if not decide_read:
        return True
    return lb is not None and not lb.allows_read(spent, t, T)

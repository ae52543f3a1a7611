"""'lstm': the plain LSTM layer (every token read; the threshold is accepted and ignored)."""
from __future__ import annotations

from .. import flops as F
from ..engine.layer import LayerWeights
from . import register_cell
from .base import Cell
from .gated import run_reference


@register_cell
class LSTMCell(Cell):
    name = "lstm"
    skims = False

    def weights(self, weights, prefix):
        w = LayerWeights.from_dict(weights, prefix)
        if w.skims:
            raise ValueError(f"layer '{prefix}' has a decision layer: its cell is not 'lstm'")
        return w

    def cost(self, w, tokens, skimmed):
        return F.layer_cost(w.input_size, w.hidden_size, 0, tokens, skimmed, skims=False)

    def reference(self, w, x, threshold, budget=None):
        return run_reference(w, x, threshold, budget)

    def weight_names(self, w):
        return ["W_ih", "W_hh", "b"]

"""'skim-lstm': Skim-LSTM (Seo et al. 2018): per token, read (big cell) or skim (small cell on h[:d'])."""
from __future__ import annotations

from .. import flops as F
from ..engine.layer import LayerWeights
from . import register_cell
from .base import Cell
from .gated import run_reference


@register_cell
class SkimLSTMCell(Cell):
    name = "skim-lstm"
    skims = True
    honours_budget = True
    min_small = 1  # a small cell of size 0 is a skip layer ('skip-lstm')

    def weights(self, weights, prefix):
        w = LayerWeights.from_dict(weights, prefix)
        if not w.skims:
            raise ValueError(f"layer '{prefix}' has no decision layer ({prefix}Wd): not a '{self.name}' layer")
        if w.small_size < self.min_small:
            raise ValueError(f"layer '{prefix}': small hidden size {w.small_size} < {self.min_small}")
        return w

    def cost(self, w, tokens, skimmed):
        return F.layer_cost(w.input_size, w.hidden_size, w.small_size, tokens, skimmed, skims=True)

    def reference(self, w, x, threshold, budget=None):
        return run_reference(w, x, threshold, budget)

    def weight_names(self, w):
        return ["W_ih", "W_hh", "b", "Ws_ih", "Ws_hh", "bs", "Wd", "bd"]

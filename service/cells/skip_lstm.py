"""'skip-lstm': a frozen LSTM with a skip predictor: a skipped step carries h and c over and costs only the
predictor (a Skim-LSTM whose small cell has size 0). The artifact may hold just the predictor (`Wd`, `bd`)
and name the LSTM it decorates in manifest 'base'; the registry merges the base's weights in."""
from __future__ import annotations

import numpy as np

from . import register_cell
from .skim_lstm import SkimLSTMCell


@register_cell
class SkipLSTMCell(SkimLSTMCell):
    name = "skip-lstm"
    min_small = 0

    def weights(self, weights, prefix):
        if prefix + "Ws_ih" not in weights and prefix + "W_ih" in weights:
            e, d = weights[prefix + "W_ih"].shape[1], weights[prefix + "W_hh"].shape[1]
            weights = {**weights, prefix + "Ws_ih": np.zeros((0, e), np.float32),
                       prefix + "Ws_hh": np.zeros((0, d), np.float32), prefix + "bs": np.zeros(0, np.float32)}
        w = super().weights(weights, prefix)
        if w.small_size != 0:
            raise ValueError(f"layer '{prefix}': a skip layer has no small cell (got d'={w.small_size})")
        return w

    def weight_names(self, w):
        return ["W_ih", "W_hh", "b", "Wd", "bd"]

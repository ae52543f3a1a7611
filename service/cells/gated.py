"""The gated LSTM family of cells (lstm, skim-lstm, skip-lstm) share one weights type (LayerWeights) and
one reference loop: a read step is the LSTM; a skimmed step runs the small cell on the first d' units
(d' = 0: a skipped step, h and c carried over); the decision layer on [x_t; h_{t-1}] picks one.
"""
from __future__ import annotations

import numpy as np

from ..engine.budget import LayerBudget
from ..engine.layer import LayerOutput, LayerWeights, decide


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def lstm_step(W_ih, W_hh, b, x, h, c):
    n = W_hh.shape[0] // 4
    gates = W_ih @ x + W_hh @ h + b
    i, f, g, o = sigmoid(gates[:n]), sigmoid(gates[n:2 * n]), np.tanh(gates[2 * n:3 * n]), sigmoid(gates[3 * n:])
    c_new = f * c + i * g
    return (o * np.tanh(c_new)).astype(np.float32), c_new.astype(np.float32)


def run_reference(w: LayerWeights, x: np.ndarray, threshold: float, budget: LayerBudget | None = None) -> LayerOutput:
    """budget: the layer's FLOP cap (service/engine/budget.py), None for none."""
    T, d = x.shape[0], w.hidden_size
    ds = w.small_size
    h = np.zeros(d, np.float32)
    c = np.zeros(d, np.float32)
    hs = np.zeros((T, d), np.float32)
    skim = np.zeros(T, bool)
    p_skim = np.zeros(T, np.float32)
    spent = 0
    for t in range(T):
        xt = x[t]
        if w.skims:
            z = w.Wd @ np.concatenate([xt, h]) + w.bd
            p_skim[t] = sigmoid(z[1] - z[0])
            skim[t] = decide(p_skim[t], threshold) or (budget is not None and not budget.allows_read(spent, t, T))
            if budget is not None:
                spent += budget.step(bool(skim[t]))
        if skim[t]:
            # small cell sees the whole h_{t-1} but updates only the first d' units
            h_s, c_s = lstm_step(w.Ws_ih, w.Ws_hh, w.bs, xt, h, c[:ds])
            h = np.concatenate([h_s, h[ds:]])
            c = np.concatenate([c_s, c[ds:]])
        else:
            h, c = lstm_step(w.W_ih, w.W_hh, w.b, xt, h, c)
        hs[t] = h
    return LayerOutput(hs, skim, p_skim)

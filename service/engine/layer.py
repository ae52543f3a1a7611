"""Weights and outputs of one recurrent layer (one direction): a plain LSTM or a Skim-LSTM.

Gate order is i, f, g, o (as torch.nn.LSTM); the two biases of PyTorch are summed into one.
Skim layers add a small cell (hidden d' < d, updating only h[:d'], c[:d']) and a decision
layer on [x_t; h_{t-1}] whose softmax gives (p_read, p_skim).

Canonical decision rule, shared by every backend so that decisions are identical:
  p_skim = sigmoid(z_skim - z_read)   (= softmax(z)[1])
  skim   = float32(p_skim) > float32(threshold)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LayerWeights:
    W_ih: np.ndarray            # (4d, e)
    W_hh: np.ndarray            # (4d, d)
    b: np.ndarray               # (4d,)
    Ws_ih: np.ndarray | None = None   # (4d', e)   small cell, skim layers only
    Ws_hh: np.ndarray | None = None   # (4d', d)
    bs: np.ndarray | None = None      # (4d',)
    Wd: np.ndarray | None = None      # (2, e+d)   decision layer
    bd: np.ndarray | None = None      # (2,)

    @property
    def input_size(self) -> int:
        return self.W_ih.shape[1]

    @property
    def hidden_size(self) -> int:
        return self.W_hh.shape[1]

    @property
    def small_size(self) -> int:
        return 0 if self.Ws_hh is None else self.Ws_hh.shape[0] // 4

    @property
    def skims(self) -> bool:
        return self.Wd is not None

    @classmethod
    def from_dict(cls, weights: dict[str, np.ndarray], prefix: str) -> "LayerWeights":
        get = lambda k: weights.get(prefix + k)  # noqa: E731
        lw = cls(get("W_ih"), get("W_hh"), get("b"), get("Ws_ih"), get("Ws_hh"), get("bs"), get("Wd"), get("bd"))
        lw.check()
        return lw

    def check(self) -> None:
        """Shapes consistent with each other, or ValueError naming the tensor."""
        if self.W_ih is None or self.W_hh is None or self.b is None:
            raise ValueError("missing W_ih, W_hh or b")
        if self.W_ih.ndim != 2 or self.W_hh.ndim != 2:
            raise ValueError(f"W_ih {self.W_ih.shape} and W_hh {self.W_hh.shape} must be matrices")
        e, d = self.input_size, self.hidden_size
        _shape("W_ih", self.W_ih, (4 * d, e))
        _shape("W_hh", self.W_hh, (4 * d, d))
        _shape("b", self.b, (4 * d,))
        small = (self.Ws_ih, self.Ws_hh, self.bs)
        if self.skims:
            if any(a is None for a in small) or self.bd is None:
                raise ValueError("a decision layer (Wd) needs Ws_ih, Ws_hh, bs and bd too")
            if self.Ws_hh.ndim != 2 or self.Ws_hh.shape[0] % 4:
                raise ValueError(f"Ws_hh has shape {self.Ws_hh.shape}, expected (4d', {d})")
            ds = self.small_size
            # d' = 0 is a skip layer: a skimmed step carries h and c over unchanged
            if not 0 <= ds < d:
                raise ValueError(f"small hidden size {ds} must be in [0, {d})")
            _shape("Ws_ih", self.Ws_ih, (4 * ds, e))
            _shape("Ws_hh", self.Ws_hh, (4 * ds, d))
            _shape("bs", self.bs, (4 * ds,))
            _shape("Wd", self.Wd, (2, e + d))
            _shape("bd", self.bd, (2,))
        elif any(a is not None for a in small) or self.bd is not None:
            raise ValueError("small-cell weights without a decision layer (Wd)")


def _shape(name: str, a: np.ndarray, want: tuple) -> None:
    if tuple(a.shape) != want:
        raise ValueError(f"{name} has shape {tuple(a.shape)}, expected {want}")


@dataclass
class LayerOutput:
    hs: np.ndarray       # (T, d) float32: hidden state after each token
    skim: np.ndarray     # (T,) bool: True where the token was skimmed
    p_skim: np.ndarray   # (T,) float32: decision probability (0 for plain LSTM layers)

    @property
    def skimmed(self) -> int:
        return int(np.count_nonzero(self.skim))  # (= skim.sum(), without its Python-level wrapper)


def decide(p_skim: float, threshold: float) -> bool:
    return bool(np.float32(p_skim) > np.float32(threshold))

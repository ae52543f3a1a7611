"""'antman-lstm' and 'antman-skim-lstm': an LSTM / Skim-LSTM layer whose big cell's two products W_ih x and
W_hh h are AntMan compression modules (service/cells/antman_modules.py; Wang et al. 2019).

Gate order i, f, g, o and one summed dense bias `b`, as the dense cells. The skim variant's small cell
(Ws_ih, Ws_hh, bs) and decision layer (Wd, bd) are dense, exactly as 'skim-lstm'. The reference step is the
gated loop of service/cells/gated.py itself (a module multiplies like a matrix), so the recurrence and the
skim decision rule are those of the dense cells by construction.

The manifest's `compression` must declare each product, and the weights must be that module with those
groups / rank (checked at load). FLOPs: Table 1 per product (service/flops.py); flops_full is the dense
teacher's (the same e, d).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import flops as F
from ..engine.layer import LayerWeights
from . import register_cell
from .antman_modules import Module, expected_shapes, from_weights
from .base import Cell
from .gated import run_reference

PRODUCTS = ("W_ih", "W_hh")


@dataclass(frozen=True, eq=False)
class AntManWeights:
    W_ih: Module                      # (4d, e) as a module
    W_hh: Module                      # (4d, d) as a module
    b: np.ndarray                     # (4d,)
    Ws_ih: np.ndarray | None = None   # skim layers: the dense small cell and decision layer, as skim-lstm
    Ws_hh: np.ndarray | None = None
    bs: np.ndarray | None = None
    Wd: np.ndarray | None = None
    bd: np.ndarray | None = None

    input_size = property(lambda self: self.W_ih.shape[1])
    hidden_size = property(lambda self: self.W_hh.shape[1])
    small_size = property(LayerWeights.small_size.fget)
    skims = property(LayerWeights.skims.fget)

    def check(self) -> None:
        # LayerWeights' shape rules read only .shape / .ndim of W_ih and W_hh, which modules have
        LayerWeights.check(self)

    @property
    def read_macs(self) -> tuple[int, int]:
        return self.W_ih.macs, self.W_hh.macs

    @classmethod
    def from_dict(cls, weights: dict[str, np.ndarray], prefix: str) -> "AntManWeights":
        get = lambda k: weights.get(prefix + k)  # noqa: E731
        w = cls(from_weights(weights, prefix + "W_ih"), from_weights(weights, prefix + "W_hh"), get("b"),
                get("Ws_ih"), get("Ws_hh"), get("bs"), get("Wd"), get("bd"))
        w.check()
        return w


@register_cell
class AntManLSTMCell(Cell):
    name = "antman-lstm"
    skims = False

    def weights(self, weights, prefix):
        w = AntManWeights.from_dict(weights, prefix)
        if w.skims != self.skims:
            raise ValueError(f"layer '{prefix}': {'no' if self.skims else 'a'} decision layer ({prefix}Wd): "
                             f"not an '{self.name}' layer")
        if self.skims and w.small_size < 1:
            raise ValueError(f"layer '{prefix}': small hidden size {w.small_size} < 1")
        return w

    def check_manifest(self, w, manifest, prefix):
        if not manifest.compression:
            raise ValueError(f"cell '{self.name}' needs the manifest's 'compression' (how W_ih and W_hh are "
                             "compressed)")
        for product in PRODUCTS:
            declared = manifest.compression.get(product)
            if declared is None:
                raise ValueError(f"manifest compression has no entry for {product}")
            spec = declared.as_dict()
            module = getattr(w, product)
            try:
                expected_shapes(spec, *module.shape)
            except ValueError as exc:
                raise ValueError(f"manifest compression {product} {spec}: {exc} of {prefix}{product} "
                                 f"{module.shape}") from None
            if module.spec() != spec:
                raise ValueError(f"manifest compression {product} says {spec}, the weights under "
                                 f"{prefix}{product} are {module.spec()}")

    def cost(self, w, tokens, skimmed):
        e, d = w.input_size, w.hidden_size
        read = F.antman_read_flops(d, *w.read_macs)
        return F.layer_cost(e, d, w.small_size, tokens, skimmed, skims=self.skims, read=read)

    def reference(self, w, x, threshold):
        return run_reference(w, x, threshold)

    def weight_names(self, w):
        names = [p + s for p in PRODUCTS for s in getattr(w, p).tensors()] + ["b"]
        return names + (["Ws_ih", "Ws_hh", "bs", "Wd", "bd"] if self.skims else [])


@register_cell
class AntManSkimLSTMCell(AntManLSTMCell):
    name = "antman-skim-lstm"
    skims = True

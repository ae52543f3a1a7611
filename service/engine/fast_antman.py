"""The compiled kernel ("fast") for AntMan layers: cells 'antman-lstm' and 'antman-skim-lstm' (C extension
service/engine/_antmankernel.c; its NumPy oracle is the cells' reference, service/cells/antman_lstm.py).

run_layer(w, x, threshold) has the reference's contract: the same LayerOutput, the same decisions (skim iff
float32(p_skim) > float32(threshold)), hidden states within float32 rounding. Each module is packed once per
AntManWeights (cached like fast.py's packing, keyed on the object) as a chain of block-diagonal stages in
the panel layout of the dense kernel (service/engine/_sk_simd.h):
  dense [W]; lgp-shuffle [blocks, then the shuffle]; lgp-dense [mix, blocks] or [blocks, mix];
  lowrank-lgp [in_blocks, mix, out_blocks]
Importing this module without the extension raises ImportError (the engine then runs the reference, logged).
"""
from __future__ import annotations

import numpy as np

from ..cells.antman_modules import Dense, LGPDense, LGPShuffle, LowRankLGP, Module
from . import _antmankernel as _k  # ImportError when the extension was not built -> reference fallback
from .fast import _panels, _r8, aligned_zeros, packed as _cached
from .layer import LayerOutput

META_VERSION = 1
MAX_STAGES = 3


def stages(mod: Module) -> list[tuple[np.ndarray, bool]]:
    """The module as (blocks (g, rows, cols), shuffle after) stages, applied first to last."""
    if isinstance(mod, Dense):
        return [(mod.W[None], False)]
    if isinstance(mod, LGPShuffle):
        return [(mod.blocks, True)]
    if isinstance(mod, LGPDense):
        mix = (mod.mix[None], False)
        return [mix, (mod.blocks, False)] if mod.mix_before else [(mod.blocks, False), mix]
    if isinstance(mod, LowRankLGP):
        return [(mod.in_blocks, False), (mod.mix[None], False), (mod.out_blocks, False)]
    raise ValueError(f"no compiled form of module '{mod.kind}'")


class Packed:
    """An AntMan layer in the kernel's layout: one float32 blob and the int32 meta array (see the C source)."""

    def __init__(self, w):
        e, d, ds = w.input_size, w.hidden_size, w.small_size
        self.e, self.d, self.ds, self.skims = e, d, ds, w.skims
        parts, offsets = [], {}

        def add(name, a):
            offsets[name] = sum(_r8(p.size) for p in parts)  # 32-byte aligned parts
            parts.append(np.ascontiguousarray(a, np.float32).ravel())

        add("b", np.concatenate([w.b, np.zeros(_r8(4 * d) + 8 - 4 * d, np.float32)]))
        if w.skims:
            RS = _r8(4 * ds)
            add("sih", _panels(w.Ws_ih, RS))
            add("sbs", np.concatenate([w.bs, np.zeros(RS + 8 - 4 * ds, np.float32)]))
            add("sh", _panels(w.Ws_hh, RS))
            add("wd", w.Wd)
            add("bd", w.bd)
        prods = []
        for name in ("W_ih", "W_hh"):
            chain = stages(getattr(w, name))
            meta = [len(chain)]
            for i, (blocks, shuffle) in enumerate(chain):
                g, rows, cols = blocks.shape
                add(f"{name}.{i}", np.concatenate([_panels(blocks[k]) for k in range(g)]))
                meta += [g, rows, cols, int(shuffle), offsets[f"{name}.{i}"]]
            prods += meta + [0] * (5 * (MAX_STAGES - len(chain)))
        self.blob = aligned_zeros(sum(_r8(p.size) for p in parts) + 8)
        pos = 0
        for p in parts:
            self.blob[pos:pos + p.size] = p
            pos += _r8(p.size)
        skim_offs = [offsets.get(k, -1) for k in ("sih", "sbs", "sh", "wd", "bd")]
        self.meta = np.array([META_VERSION, e, d, ds, int(w.skims), offsets["b"], *skim_offs, *prods], np.int32)


def packed(w) -> Packed:
    return _cached(w, Packed)


def prepare(w) -> None:
    """Pack w and run a two-token warm-up through each loop (call at model load)."""
    P = packed(w)
    x = np.zeros((2, P.e), np.float32)
    run_layer(w, x, 1.0)
    if P.skims:
        run_layer(w, x, 0.5)


def run_layer(w, x: np.ndarray, threshold: float) -> LayerOutput:
    P = packed(w)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != P.e:
        raise ValueError(f"x has shape {x.shape}, expected (T, {P.e})")
    T = x.shape[0]
    hs, skim, p = np.empty((T, P.d), np.float32), np.empty(T, np.bool_), np.empty(T, np.float32)
    if T:
        _k.run(P.blob, P.meta, x, T, threshold, hs, skim, p)
    return LayerOutput(hs, skim, p)


def has_avx2() -> bool:
    return bool(_k.has_avx2())


run_layer.prepare = prepare

"""Recurrent layers as ONNX subgraphs, from the LayerWeights of service.engine.layer.

add_layer(gb, w, x, threshold) appends one layer (one direction) reading x (float32 [T, e]) and
returns the names of hs [T, d], h_last [d], skim [T] bool and p_skim [T] float32, so every model
family (classifier, later QA with several layers/directions, compressed LSTMs with another cell)
builds its graph from the same pieces.

- Plain LSTM: the ONNX LSTM op (fused, one node). ONNX's gate order is i, o, f, c (ours i, f, g, o);
  B = [Wb; Rb] holds our summed bias in Wb and zeros in Rb.
- Skim-LSTM: a Loop over tokens. Each step computes the decision p_skim = sigmoid(z_skim - z_read)
  from [x_t; h_{t-1}], skim = p_skim > threshold (threshold is a graph input, so the per-request knob
  survives export), then an If whose read branch runs the big cell and whose skim branch runs the
  small cell on h[:d'], c[:d'] (the rest copied). The big cell's matvecs live only in the read
  branch: what the graph computes is what service/flops.py counts.
T = 0 is valid: the Loop runs no step and the final state is zeros (the LSTM op is not given an
empty sequence: an If picks zeros for it).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from ..engine.layer import LayerWeights
from .graph import GraphBuilder

ONNX_GATE_ORDER = (0, 3, 1, 2)   # ours i,f,g,o -> ONNX i,o,f,c


def onnx_gate_order(a: np.ndarray, d: int) -> np.ndarray:
    """Gate blocks from ours (i, f, g, o) to ONNX's (i, o, f, c)."""
    return np.concatenate([a[k * d:(k + 1) * d] for k in ONNX_GATE_ORDER], axis=0)


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def add_layer(gb: GraphBuilder, w: LayerWeights, x: str, threshold: str, hint: str = "rnn") -> dict[str, str]:
    return _skim_layer(gb, w, x, threshold, hint) if w.skims else _dense_layer(gb, w, x, hint)


def _seq_len(gb: GraphBuilder, x: str) -> tuple[str, str]:
    """(T as int64 [1], T as int64 scalar)"""
    t1 = gb.op("Shape", [x], hint="T1", start=0, end=1)
    t0 = gb.op("Reshape", [t1, gb.const(np.array([], np.int64), "scalar_shape")], hint="T")
    return t1, t0


def _dense_layer(gb: GraphBuilder, w: LayerWeights, x: str, hint: str) -> dict[str, str]:
    d = w.hidden_size
    t1, t0 = _seq_len(gb, x)
    W = gb.const(onnx_gate_order(_f32(w.W_ih), d)[None], f"{hint}_W")
    R = gb.const(onnx_gate_order(_f32(w.W_hh), d)[None], f"{hint}_R")
    B = gb.const(np.concatenate([onnx_gate_order(_f32(w.b), d), np.zeros(4 * d, np.float32)])[None], f"{hint}_B")
    nonempty = gb.op("Greater", [t0, gb.const(np.array(0, np.int64), "zero_i64")], hint=f"{hint}_nonempty")

    run = gb.sub(f"{hint}_lstm")
    x3 = run.op("Unsqueeze", [x, run.const(np.array([1], np.int64), "axes")], hint=f"{hint}_x3")
    Y, Y_h = run.op("LSTM", [x3, W, R, B], n_out=2, hint=f"{hint}_lstm", hidden_size=d)
    run.output(run.op("Reshape", [Y, run.const(np.array([-1, d], np.int64), "shape")], hint=f"{hint}_hs"),
               np.float32, [None, d])
    run.output(run.op("Reshape", [Y_h, run.const(np.array([d], np.int64), "shape")], hint=f"{hint}_hlast"),
               np.float32, [d])

    empty = run.sub(f"{hint}_empty")
    zshape = empty.op("Concat", [t1, empty.const(np.array([d], np.int64), "d")], axis=0)
    hs0 = empty.op("ConstantOfShape", [zshape], hint=f"{hint}_hs0",
                   value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0]))
    h0 = empty.op("Identity", [empty.const(np.zeros(d, np.float32), f"{hint}_h0")])
    empty.output(hs0, np.float32, [None, d])
    empty.output(h0, np.float32, [d])

    hs, h_last = gb.op("If", [nonempty], n_out=2, hint=hint, then_branch=run.graph(), else_branch=empty.graph())
    skim = gb.op("ConstantOfShape", [t1], hint=f"{hint}_skim",
                 value=helper.make_tensor("v", TensorProto.BOOL, [1], [False]))
    p_skim = gb.op("ConstantOfShape", [t1], hint=f"{hint}_p_skim",
                   value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0]))
    return {"hs": hs, "h_last": h_last, "skim": skim, "p_skim": p_skim}


def _cell(g: GraphBuilder, xh: str, W_cat: np.ndarray, b: np.ndarray, c_prev: str, n: int, hint: str):
    """LSTM cell on [x; h_prev] with gate order i,f,g,o; returns (h, c) of size n (c_prev has size n)."""
    gates = g.op("Add", [g.op("MatMul", [xh, g.const(_f32(W_cat.T), f"{hint}_WT")]), g.const(_f32(b), f"{hint}_b")])
    i, f, gg, o = g.op("Split", [gates, g.const(np.array([n] * 4, np.int64), "split")], n_out=4, axis=0)
    i, f, o = (g.op("Sigmoid", [v]) for v in (i, f, o))
    gg = g.op("Tanh", [gg])
    c = g.op("Add", [g.op("Mul", [f, c_prev]), g.op("Mul", [i, gg])], hint=f"{hint}_c")
    h = g.op("Mul", [o, g.op("Tanh", [c])], hint=f"{hint}_h")
    return h, c


def _skim_layer(gb: GraphBuilder, w: LayerWeights, x: str, threshold: str, hint: str) -> dict[str, str]:
    e, d, ds = w.input_size, w.hidden_size, w.small_size
    _, t0 = _seq_len(gb, x)
    zeros = gb.const(np.zeros(d, np.float32), f"{hint}_zeros")
    cond = gb.const(np.array(True), "true")

    body = gb.sub(f"{hint}_step")
    it = body.input(body.fresh("iter"), np.int64, [])
    cond_in = body.input(body.fresh("cond_in"), np.bool_, [])
    h_prev = body.input(body.fresh(f"{hint}_h_prev"), np.float32, [d])
    c_prev = body.input(body.fresh(f"{hint}_c_prev"), np.float32, [d])
    x_t = body.op("Gather", [x, it], hint=f"{hint}_x_t", axis=0)
    xh = body.op("Concat", [x_t, h_prev], hint=f"{hint}_xh", axis=0)
    # decision: z = Wd [x; h] + bd; z_skim - z_read as a dot with (-1, 1) (exact: one rounding, as a subtraction)
    z = body.op("Add", [body.op("MatMul", [xh, body.const(_f32(w.Wd.T), f"{hint}_WdT")]),
                        body.const(_f32(w.bd), f"{hint}_bd")], hint=f"{hint}_z")
    diff = body.op("MatMul", [z, body.const(np.array([-1.0, 1.0], np.float32), "minus_plus")])
    p = body.op("Sigmoid", [diff], hint=f"{hint}_p")
    s = body.op("Greater", [p, threshold], hint=f"{hint}_s")

    read = body.sub(f"{hint}_read")
    h_r, c_r = _cell(read, xh, np.concatenate([w.W_ih, w.W_hh], axis=1), w.b, c_prev, d, f"{hint}_big")
    read.output(h_r, np.float32, [d])
    read.output(c_r, np.float32, [d])

    sk = body.sub(f"{hint}_skim")
    lo = sk.const(np.array([0], np.int64), "lo")
    mid = sk.const(np.array([ds], np.int64), "mid")
    hi = sk.const(np.array([d], np.int64), "hi")
    c_small = sk.op("Slice", [c_prev, lo, mid])
    h_s, c_s = _cell(sk, xh, np.concatenate([w.Ws_ih, w.Ws_hh], axis=1), w.bs, c_small, ds, f"{hint}_small")
    h_k = sk.op("Concat", [h_s, sk.op("Slice", [h_prev, mid, hi])], axis=0)
    c_k = sk.op("Concat", [c_s, sk.op("Slice", [c_prev, mid, hi])], axis=0)
    sk.output(h_k, np.float32, [d])
    sk.output(c_k, np.float32, [d])

    h_new, c_new = body.op("If", [s], n_out=2, hint=f"{hint}_hc", then_branch=sk.graph(), else_branch=read.graph())
    body.output(body.op("Identity", [cond_in]), np.bool_, [])
    body.output(h_new, np.float32, [d])
    body.output(c_new, np.float32, [d])
    body.output(body.op("Identity", [h_new]), np.float32, [d])
    body.output(body.op("Identity", [s]), np.bool_, [])
    body.output(body.op("Identity", [p]), np.float32, [])

    h_last, _c_last, hs, skim, p_skim = gb.op("Loop", [t0, cond, zeros, zeros], n_out=5, hint=hint, body=body.graph())
    return {"hs": hs, "h_last": h_last, "skim": skim, "p_skim": p_skim}


def layer_model(w: LayerWeights, name: str = "layer") -> onnx.ModelProto:
    """One layer alone (inputs x [T, e], threshold; outputs hs, skim, p_skim): the 'onnx' layer kernel."""
    from .graph import make_model

    gb = GraphBuilder(name)
    x = gb.input("x", np.float32, ["T", w.input_size])
    thr = gb.input("threshold", np.float32, [])
    out = add_layer(gb, w, x, thr)
    d = w.hidden_size
    gb.op("Identity", [out["hs"]], outputs=["hs"])
    gb.op("Identity", [out["skim"]], outputs=["skim"])
    gb.op("Identity", [out["p_skim"]], outputs=["p_skim"])
    gb.output("hs", np.float32, ["T", d])
    gb.output("skim", np.bool_, ["T"])
    gb.output("p_skim", np.float32, ["T"])
    return make_model(gb, doc=f"skimserve {name}: one recurrent layer")

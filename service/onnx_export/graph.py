"""A small helper around onnx.helper for building graphs from NumPy weights (no torch).

GraphBuilder collects nodes, initializers, inputs and outputs of one graph (the main graph or a
Loop/If body); names are made unique with a per-model counter shared by the subgraphs, so a body
may refer to values of its enclosing scopes (outer-scope names are visible in ONNX subgraphs).
"""
from __future__ import annotations

import itertools

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Opset 17 (ONNX 1.12): LSTM-14, Loop-16, If-16, Split-13 (split sizes as an input), Slice-13.
# Any runtime from onnxruntime 1.12 on runs it; stated in docs/onnx.md.
OPSET = 17
IR_VERSION = 8

DTYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float16): TensorProto.FLOAT16,
          np.dtype(np.int64): TensorProto.INT64, np.dtype(np.bool_): TensorProto.BOOL}


class GraphBuilder:
    def __init__(self, name: str, counter: itertools.count | None = None):
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._count = counter if counter is not None else itertools.count()

    def sub(self, name: str) -> "GraphBuilder":
        """A builder for a subgraph (Loop/If body) that shares the name counter."""
        return GraphBuilder(name, self._count)

    def fresh(self, hint: str) -> str:
        return f"{hint}_{next(self._count)}"

    # --- values ------------------------------------------------------------------------
    def const(self, array, hint: str = "c") -> str:
        """An initializer holding `array` (kept at its dtype); returns its name."""
        arr = np.asarray(array)
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.array(arr, order="C", copy=True), name))
        return name

    def input(self, name: str, dtype, shape) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, DTYPES[np.dtype(dtype)], shape))
        return name

    def output(self, name: str, dtype, shape) -> str:
        self.outputs.append(helper.make_tensor_value_info(name, DTYPES[np.dtype(dtype)], shape))
        return name

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, hint: str | None = None,
           outputs: list[str] | None = None, **attrs) -> str | list[str]:
        """Add a node; returns its output name (or names when n_out > 1)."""
        if outputs is None:
            outputs = [self.fresh(hint or op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=self.fresh("n_" + op_type), **attrs))
        return outputs[0] if len(outputs) == 1 else outputs

    def graph(self) -> onnx.GraphProto:
        return helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.initializers)


def make_model(gb: GraphBuilder, doc: str = "", metadata: dict[str, str] | None = None) -> onnx.ModelProto:
    model = helper.make_model(gb.graph(), opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="skimserve", doc_string=doc)
    model.ir_version = IR_VERSION
    for k, v in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, str(v)
    onnx.checker.check_model(model, full_check=True)
    return model

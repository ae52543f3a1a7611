"""Exporter for the classifier families ('lstm', 'skim-lstm'): embedding -> layer 'rnn.' -> head on h_T."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto

from ..artifacts import Artifact
from ..engine.layer import LayerWeights
from . import register
from .graph import GraphBuilder, make_model
from .layers import add_layer


def embed(gb: GraphBuilder, artifact: Artifact, ids: str) -> str:
    """Gather rows of the embedding; kept at its stored dtype (float16 halves model.onnx), cast after."""
    table = artifact.weights["embedding"]
    stored = artifact.manifest.get("weight_dtypes", {}).get("embedding", "float32")
    if stored == "float16":
        rows = gb.op("Gather", [gb.const(table.astype(np.float16), "embedding"), ids], axis=0)
        return gb.op("Cast", [rows], hint="x", to=TensorProto.FLOAT)
    return gb.op("Gather", [gb.const(table.astype(np.float32), "embedding"), ids], hint="x", axis=0)


@register("classify", "lstm", "skim-lstm")
def export_classifier(artifact: Artifact) -> onnx.ModelProto:
    w = LayerWeights.from_dict(artifact.weights, "rnn.")
    head_W, head_b = artifact.weights["head.W"], artifact.weights["head.b"]
    d, n_labels = w.hidden_size, head_W.shape[0]
    gb = GraphBuilder(artifact.name)
    ids = gb.input("token_ids", np.int64, ["T"])
    thr = gb.input("threshold", np.float32, [])  # dense models accept it and ignore it
    x = embed(gb, artifact, ids)
    out = add_layer(gb, w, x, thr, "rnn")
    logits = gb.op("Add", [gb.op("MatMul", [out["h_last"], gb.const(np.ascontiguousarray(head_W.T), "head_WT")]),
                           gb.const(head_b, "head_b")])
    gb.op("Identity", [logits], outputs=["logits"])
    for name in ("hs", "skim", "p_skim"):
        gb.op("Identity", [out[name]], outputs=[name])
    gb.output("logits", np.float32, [n_labels])
    gb.output("hs", np.float32, ["T", d])
    gb.output("skim", np.bool_, ["T"])
    gb.output("p_skim", np.float32, ["T"])
    m = artifact.manifest
    return make_model(gb, doc=f"skimserve {m['family']} classifier {artifact.name}",
                      metadata={"skimserve.name": artifact.name, "skimserve.family": m["family"],
                                "skimserve.version": m.get("version", ""), "skimserve.labels": ",".join(m["labels"]),
                                "skimserve.outputs": "logits,hs,skim,p_skim"})

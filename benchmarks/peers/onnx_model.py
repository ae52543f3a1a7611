"""What every peer shares: skimserve's tokenizer and vocabulary, and ONNX Runtime on the model's exported
graph (model.onnx if the folder has one, else the graph skimserve's exporter builds from the shipped weights,
byte-identical to the file `python -m training.export_onnx` writes). Only the serving framework around it differs."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.tokenizer import tokenize


class OnnxClassifier:
    def __init__(self, model_dir: str | os.PathLike):
        model_dir = Path(model_dir)
        vocab = model_dir.joinpath("vocab.txt").read_text(encoding="utf-8").split("\n")
        self.ids = {w: i for i, w in enumerate(vocab) if w}
        self.unk = self.ids.get("<unk>", 1)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # as skimserve's default: parallel across requests, not inside one
        onnx_file = model_dir / "model.onnx"
        if onnx_file.exists():
            graph = onnx_file.read_bytes()
        else:
            from service.artifacts import load_artifact
            from service.onnx_export import export_model

            graph = export_model(load_artifact(model_dir)).SerializeToString()
        self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self.has_threshold = any(i.name == "threshold" for i in self.session.get_inputs())

    def __call__(self, text: str, threshold: float = 0.5) -> dict:
        ids = np.array([self.ids.get(w, self.unk) for w in tokenize(text)] or [self.unk], dtype=np.int64)
        feed = {"token_ids": ids}
        if self.has_threshold:
            feed["threshold"] = np.array(threshold, dtype=np.float32)
        outputs = self.session.run(None, feed)
        logits = outputs[0]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        skimmed = int(outputs[2].sum()) if len(outputs) > 2 else 0
        return {"label": int(p.argmax()), "probabilities": p.tolist(), "tokens": int(ids.size), "skimmed": skimmed}

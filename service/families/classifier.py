"""Text classifier: tokens -> embedding -> one (Skim-)LSTM layer -> linear head on the last hidden state."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import flops as F
from ..artifacts import Artifact
from ..engine.backends import default_kernel
from ..engine.layer import LayerOutput, LayerWeights
from ..tokenizer import Token
from .base import Cost, ServedModel, layer_cost, timed


@dataclass
class ClassifyResult:
    label: str
    label_index: int
    probabilities: dict[str, float]
    logits: np.ndarray
    tokens: list[Token]
    layer: LayerOutput
    cost: Cost
    threshold: float


class Classifier(ServedModel):
    task = "classify"

    def __init__(self, artifact: Artifact, kernel: str = "auto"):
        if kernel == "auto":
            kernel = default_kernel(artifact.manifest["family"])
        super().__init__(artifact, kernel)
        self.layer = LayerWeights.from_dict(artifact.weights, "rnn.")
        self.head_W = artifact.weights["head.W"]
        self.head_b = artifact.weights["head.b"]
        self.labels = list(self.manifest["labels"])
        if self.head_W.shape != (len(self.labels), self.layer.hidden_size):
            raise ValueError(f"{self.name}: head shape {self.head_W.shape} does not fit labels/hidden size")
        # Whole-model backends (ONNX Runtime runs embedding, layer and head in one graph): a runner with
        # this class's forward signature, built once here.
        self.runner = None
        if self.kernel_name == "onnx":
            from ..engine.onnx_backend import model_runner

            self.runner = model_runner(artifact)
        # Layer kernels with a load-time hook (the compiled 'fast' kernel packs its weights and warms up):
        # run it now, so that nothing heavy happens on the first request.
        prepare = getattr(self.kernel, "prepare", None)
        if self.runner is None and prepare is not None:
            prepare(self.layer)

    def forward(self, ids: np.ndarray, threshold: float) -> tuple[np.ndarray, LayerOutput]:
        if self.runner is not None:
            return self.runner.forward(ids, threshold)
        x = self.embed(ids)
        out = self.kernel(self.layer, x, threshold)
        h_last = out.hs[-1] if len(ids) else np.zeros(self.layer.hidden_size, np.float32)
        return self.head_W @ h_last + self.head_b, out

    def layer_cost(self, out: LayerOutput) -> F.LayerCost:
        """The request's cost without timing: recurrent layer plus head (used by evaluation)."""
        lc = layer_cost(self.layer, out)
        head = F.head_flops(self.layer.hidden_size, len(self.labels))
        return F.LayerCost(lc.tokens, lc.skimmed, lc.flops + head, lc.flops_full + head)

    def classify_tokens(self, tokens: list[Token], threshold: float | None = None) -> ClassifyResult:
        threshold = self.default_threshold if threshold is None else float(threshold)
        ids = self.to_ids(tokens)
        (logits, out), seconds = timed(self.forward, ids, threshold)
        z = logits - logits.max()
        probs = np.exp(z) / np.exp(z).sum()
        k = int(np.argmax(probs))
        cost = self.cost([("rnn", self.layer, out)], F.head_flops(self.layer.hidden_size, len(self.labels)), seconds)
        return ClassifyResult(self.labels[k], k, {lab: float(p) for lab, p in zip(self.labels, probs)},
                              logits, tokens, out, cost, threshold)

    def classify(self, text: str, threshold: float | None = None) -> ClassifyResult:
        return self.classify_tokens(self.tokenize(text), threshold)

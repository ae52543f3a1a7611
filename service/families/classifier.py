"""Text classifier: tokens -> embedding -> recurrent layers -> linear head on the top layer's last state."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .. import flops as F
from ..artifacts import Artifact
from ..engine.layer import LayerOutput
from ..engine.stack import LayerResult
from ..tokenizer import Token, embed_rows
from .base import Cost, ServedModel, stack_cost, timed


@dataclass
class ClassifyResult:
    label: str
    label_index: int
    probabilities: dict[str, float]
    logits: np.ndarray
    tokens: list[Token]
    layer: LayerOutput          # the first layer's decisions (what explain=true shows)
    cost: Cost
    threshold: float
    budget: float | None = None


class Classifier(ServedModel):
    task = "classify"

    def __init__(self, artifact: Artifact, kernel: str = "auto"):
        super().__init__(artifact, kernel)
        self.layer = self.stack.layers[0].weights
        self.head_W = artifact.weights["head.W"]
        self.head_b = artifact.weights["head.b"]
        self.labels = list(self.spec.labels or [])
        self._lean = self._lean_layer()
        self._head_flops = F.head_flops(self.stack.output_size, len(self.labels))  # (head_flops, once)
        if self.head_W.shape != (len(self.labels), self.stack.output_size):
            raise ValueError(f"{self.name}: head shape {self.head_W.shape} does not fit "
                             f"{len(self.labels)} labels x hidden size {self.stack.output_size}")

    def _lean_layer(self):
        """(layer, its kernel's run_layer) when forward_all may call the compiled kernel directly: one
        forward layer on the fast backend (the stack's own dispatch, done once); else None."""
        if self.runner is not None or len(self.stack.layers) != 1:
            return None
        layer = self.stack.layers[0]
        backend = layer.backend
        if layer.spec.direction == "backward" or backend.name != "fast":
            return None
        from ..engine import fast

        return (layer, fast.run_layer) if backend._impl(layer.weights) is fast else None

    def uses_runner(self, kernel: str) -> bool:
        return len(self.stack.layers) == 1 and kernel != "reference"

    @property
    def head_flops(self) -> int:
        return F.head_flops(self.stack.output_size, len(self.labels))

    def forward_all(self, ids: np.ndarray, threshold: float, budget: float | None = None,
                    all_states: bool = False) -> tuple[np.ndarray, list[LayerResult]]:
        """(logits, each layer's result). all_states=False lets the lean path keep only the last state
        of its layer (out.hs is (1, d) then): what a request needs."""
        capped = budget is not None and budget < 1.0
        if self.runner is not None and not capped:  # one graph: its whole time is the layer's
            (logits, out), seconds = timed(self.runner.forward, ids, threshold)
            return logits, [LayerResult(self.stack.layers[0], out, float(threshold), seconds)]
        lean = self._lean
        if lean is not None and not capped and type(threshold) is float and len(ids):
            # what the stack does for its one layer (embed, run, time it, the head on the last state),
            # without its per-request dispatch and keeping the last state only (out.hs is (1, d));
            # tests/test_fast_kernel.py holds the two equal
            layer, run = lean
            x = embed_rows(self.embedding, ids)
            t0 = time.perf_counter()
            out = run(layer.weights, x, threshold, None, not all_states)  # the head reads the last state
            seconds = time.perf_counter() - t0
            return self.head_W @ out.hs[-1] + self.head_b, [LayerResult(layer, out, threshold, seconds)]
        # a budget runs layer by layer (the ONNX graph has no budget input: the stack reroutes, logged)
        top, results = self.stack.run(self.embed(ids), threshold, budget)
        h_last = top[-1] if len(ids) else np.zeros(self.stack.output_size, np.float32)
        return self.head_W @ h_last + self.head_b, results

    def forward(self, ids: np.ndarray, threshold: float) -> tuple[np.ndarray, LayerOutput]:
        """(logits, the first layer's output): the single-layer view evaluation and benchmarks use."""
        logits, results = self.forward_all(ids, threshold, all_states=True)
        return logits, results[0].out

    def layer_cost(self, out: LayerOutput) -> F.LayerCost:
        """A single-layer request's cost without timing: recurrent layer plus head (used by evaluation)."""
        lc = self.stack.layers[0].cost(out)
        return F.LayerCost(lc.tokens, lc.skimmed, lc.flops + self.head_flops, lc.flops_full + self.head_flops)

    def classify_tokens(self, tokens: list[Token], threshold: float | None = None,
                        budget: float | None = None) -> ClassifyResult:
        threshold = self.default_threshold if threshold is None else float(threshold)
        ids = self.to_ids(tokens)
        (logits, results), seconds = timed(self.forward_all, ids, threshold, budget)
        e = np.exp(logits - np.maximum.reduce(logits))  # (the ufuncs of .max() and .sum(), called directly)
        probs = e / np.add.reduce(e)
        k = int(probs.argmax())
        cost = stack_cost(results, self._head_flops, seconds)
        return ClassifyResult(self.labels[k], k, dict(zip(self.labels, probs.tolist())),
                              logits, tokens, results[0].out, cost, threshold, budget)

    def classify(self, text: str, threshold: float | None = None, budget: float | None = None) -> ClassifyResult:
        return self.classify_tokens(self.tokenize(text), threshold, budget)

"""What every served model shares: the artifact, the vocabulary, the layer stack, the cost accounting.

A model of a new task subclasses ServedModel (its forward pass over self.stack) and is named by a task
in service/tasks/. A new cell needs nothing here: the stack builds any registered cell (service/cells/).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..artifacts import Artifact
from ..calibration import Calibration
from ..engine.backends import get_backend
from ..engine.stack import LayerResult, LayerStack
from ..manifest import Manifest
from ..tokenizer import Token, Vocabulary, embed_rows

PAD, UNK = "<pad>", "<unk>"


@dataclass
class Cost:
    tokens: int
    skimmed: int
    flops: int
    flops_full: int
    latency_ms: float
    per_layer: list[dict] = field(default_factory=list)

    @property
    def skim_rate(self) -> float:
        return self.skimmed / self.tokens if self.tokens else 0.0

    @property
    def flop_reduction(self) -> float:
        return self.flops_full / self.flops if self.flops else 1.0

    @property
    def per_token_us(self) -> float:
        return 1000.0 * self.latency_ms / self.tokens if self.tokens else 0.0

    def as_dict(self) -> dict:
        return {
            "tokens": self.tokens, "skimmed": self.skimmed, "skim_rate": self.skim_rate,
            "flops": self.flops, "flops_full": self.flops_full, "flop_reduction": self.flop_reduction,
            "latency_ms": self.latency_ms, "per_token_us": self.per_token_us, "per_layer": self.per_layer,
        }


def stack_cost(results: list[LayerResult], extra_flops: int, seconds: float) -> Cost:
    """The cost of one request: every layer's FLOPs plus the non-recurrent part (`extra_flops`: heads,
    attention), paid equally by the full model. Several layers: tokens and skimmed count layer-steps."""
    per_layer, tokens, skimmed, flops, full = [], 0, 0, extra_flops, extra_flops
    for r in results:
        lc = r.cost
        per_layer.append({"layer": r.layer.name, "direction": r.layer.spec.direction, "threshold": r.threshold,
                          "tokens": lc.tokens, "skimmed": lc.skimmed, "skim_rate": lc.skim_rate,
                          "flops": lc.flops, "flops_full": lc.flops_full,
                          "flop_reduction": lc.flops_full / lc.flops if lc.flops else 1.0,
                          "latency_ms": 1000.0 * r.seconds,
                          "per_token_us": 1e6 * r.seconds / lc.tokens if lc.tokens else 0.0})
        tokens += lc.tokens
        skimmed += lc.skimmed
        flops += lc.flops
        full += lc.flops_full
    return Cost(tokens, skimmed, flops, full, 1000.0 * seconds, per_layer)


class ServedModel:
    task: str = ""

    def __init__(self, artifact: Artifact, kernel: str = "auto"):
        self.artifact = artifact
        self.manifest = artifact.manifest
        self.spec: Manifest = artifact.spec
        self.name = artifact.name
        self.version = str(self.spec.version)
        self.vocabulary = Vocabulary(list(artifact.vocab), UNK)
        self.index, self.unk_id = self.vocabulary.index, self.vocabulary.unk_id
        self.embedding = artifact.weights["embedding"]
        self.stack = LayerStack(self.spec, artifact.weights, kernel)
        if self.stack.input_size != self.input_width():
            raise ValueError(f"{self.name}: the first layer reads {self.stack.input_size} inputs, the model "
                             f"gives it {self.input_width()}")
        self.default_threshold = float(self.spec.default_threshold)
        self.calibration = Calibration.from_manifest(self.manifest)  # None: not calibrated
        # Whole-model backends (ONNX Runtime runs the exported graph in one session): built once here.
        self.runner = get_backend(kernel, self.spec.cell).model_runner(artifact) if self.uses_runner(kernel) else None
        if self.runner is None:
            self.stack.prepare()  # pack weights and warm the kernels now, not on the first request

    def input_width(self) -> int:
        """Width of what the first layer reads (default: the embedding)."""
        return self.embedding.shape[1]

    def uses_runner(self, kernel: str) -> bool:
        return kernel != "reference"

    @property
    def cell(self) -> str:
        return self.spec.cell

    @property
    def kernel_name(self) -> str:
        """What runs it ("fast", "onnx", "fast+reference"...): fixed once the model is built (every response says it)."""
        name = self.__dict__.get("_kernel_name")
        if name is None:
            if self.runner is not None:
                name = get_backend("onnx").name
            else:
                name = "+".join(sorted({layer.backend.name for layer in self.stack.layers}))
            self._kernel_name = name
        return name

    # --- text -> ids -------------------------------------------------------------
    def tokenize(self, text: str) -> list[Token]:
        return self.vocabulary.tokenize(text)  # tokens with their ids in this model's vocabulary

    def to_ids(self, tokens: list[Token] | list[str]) -> np.ndarray:
        return self.vocabulary.ids(tokens)

    def embed(self, ids: np.ndarray) -> np.ndarray:
        return embed_rows(self.embedding, ids)

    def describe(self) -> dict:
        return {"name": self.name, "version": self.version, "task": self.task, "family": self.spec.cell,
                "cell": self.spec.cell, "kernel": self.kernel_name, "default_threshold": self.default_threshold,
                "skims": self.stack.skims, "layers": [layer.name for layer in self.stack.layers],
                "sizes": self.spec.sizes, "labels": self.spec.labels}


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0

"""What every served model family shares: the artifact, the vocabulary, the cost accounting.

A new family (QA, AntMan, skip predictor) subclasses ServedModel, declares its task, and
implements its forward pass with the layer kernels of service.engine.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .. import flops as F
from ..artifacts import Artifact
from ..engine.backends import get_layer_kernel
from ..engine.layer import LayerOutput, LayerWeights
from ..tokenizer import Token, tokenize_with_spans

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


def layer_cost(w: LayerWeights, out: LayerOutput) -> F.LayerCost:
    return F.layer_cost(w.input_size, w.hidden_size, w.small_size, len(out.skim), out.skimmed, w.skims)


class ServedModel:
    task: str = ""

    def __init__(self, artifact: Artifact, kernel: str = "fast"):
        self.artifact = artifact
        self.manifest = artifact.manifest
        self.name = artifact.name
        self.version = str(self.manifest.get("version", "1"))
        self.index = {w: i for i, w in enumerate(artifact.vocab)}
        self.unk_id = self.index[UNK]
        self.embedding = artifact.weights["embedding"]
        self.kernel_name, self.kernel = get_layer_kernel(kernel)
        self.default_threshold = float(self.manifest.get("default_threshold", 0.5))

    # --- text -> ids -------------------------------------------------------------
    def tokenize(self, text: str) -> list[Token]:
        return tokenize_with_spans(text)

    def to_ids(self, tokens: list[Token] | list[str]) -> np.ndarray:
        words = [t if isinstance(t, str) else t.text for t in tokens]
        return np.fromiter((self.index.get(w, self.unk_id) for w in words), dtype=np.int64, count=len(words))

    def embed(self, ids: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.embedding[ids], dtype=np.float32)

    # --- cost --------------------------------------------------------------------
    @staticmethod
    def cost(layers: list[tuple[str, LayerWeights, LayerOutput]], head_flops: int, seconds: float) -> Cost:
        per_layer, tokens, skimmed, flops, full = [], 0, 0, head_flops, head_flops
        for name, w, out in layers:
            lc = layer_cost(w, out)
            per_layer.append({"layer": name, "tokens": lc.tokens, "skimmed": lc.skimmed, "skim_rate": lc.skim_rate,
                              "flops": lc.flops, "flops_full": lc.flops_full})
            tokens += lc.tokens
            skimmed += lc.skimmed
            flops += lc.flops
            full += lc.flops_full
        # For several layers, tokens/skimmed count layer-steps; single-layer models: plain tokens.
        return Cost(tokens, skimmed, flops, full, 1000.0 * seconds, per_layer)

    def describe(self) -> dict:
        return {"name": self.name, "version": self.version, "task": self.task, "family": self.manifest["family"],
                "kernel": self.kernel_name, "default_threshold": self.default_threshold,
                "sizes": self.manifest.get("sizes", {}), "labels": self.manifest.get("labels")}


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0

"""A stack of recurrent layers as a manifest lists them: several depths, forward and backward directions.

Layers of one depth read the same input; the next depth reads their hidden states concatenated in the
listed order (forward then backward for a bidirectional layer). A backward layer is the forward kernel
over the reversed sequence, its outputs reversed back into token order, so every backend that runs a
cell runs both directions. Each layer gets its own threshold (per depth), its cell's FLOP formula and
its backend, chosen once at load time.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from ..cells import Cell, LayerCost, get_cell
from ..manifest import LayerSpec, Manifest
from .backends import Backend, budget_backend, get_backend
from .budget import layer_budget
from .layer import LayerOutput

log = logging.getLogger(__name__)
COST_CACHE_SIZE = 4096  # (tokens, skimmed) pairs remembered per layer (Layer.cost)
_BUDGET_ROUTED: dict[str, bool] = {}  # backends whose budgeted layers were rerouted (logged once each)


@dataclass
class Layer:
    spec: LayerSpec
    cell: Cell
    weights: object
    backend: Backend

    @property
    def name(self) -> str:
        return self.spec.name

    def run(self, x: np.ndarray, threshold: float, budget: float | None = None) -> LayerOutput:
        """budget: None or a share in (0, 1] of the full layer's FLOPs (service/engine/budget.py)."""
        backward = self.spec.direction == "backward"
        if backward:
            x = np.ascontiguousarray(x[::-1])
        lb = layer_budget(self.cell, self.weights, x.shape[0], budget)
        if lb is not None and not self.cell.honours_budget:
            raise ValueError(f"cell '{self.cell.name}' cannot honour a FLOP budget")
        backend = self.backend
        if lb is not None and not backend.enforces_budget:
            backend = self._budget_backend()
        if backend.name == "reference":
            out = self.cell.reference(self.weights, x, threshold, *([lb] if lb is not None else []))
        else:
            out = backend.run_layer(self.weights, x, threshold, *([lb] if lb is not None else []))
        if backward:
            out = LayerOutput(np.ascontiguousarray(out.hs[::-1]), out.skim[::-1].copy(), out.p_skim[::-1].copy())
        return out

    def _budget_backend(self) -> Backend:
        b = budget_backend(self.cell.name)
        if not _BUDGET_ROUTED.get(self.backend.name):
            _BUDGET_ROUTED[self.backend.name] = True
            log.info("backend '%s' cannot enforce a FLOP budget; budgeted layers run on '%s'", self.backend.name,
                     b.name)
        return b

    def cost(self, out: LayerOutput) -> LayerCost:
        """The cell's cost of this output: a pure function of (tokens, skimmed) for these weights, so it is
        remembered per layer (a few thousand pairs at most; computing it took microseconds a request)."""
        key = (len(out.skim), out.skimmed)
        costs = self.__dict__.setdefault("_costs", {})
        cost = costs.get(key)
        if cost is None:
            if len(costs) >= COST_CACHE_SIZE:
                costs.clear()
            cost = costs[key] = self.cell.cost(self.weights, *key)
        return cost


@dataclass
class LayerResult:
    layer: Layer
    out: LayerOutput
    threshold: float
    seconds: float = 0.0

    @property
    def cost(self) -> LayerCost:
        return self.layer.cost(self.out)


class LayerStack:
    def __init__(self, manifest: Manifest, weights: dict[str, np.ndarray], kernel: str = "auto"):
        self.layers: list[Layer] = []
        for spec in manifest.layers:
            cell = get_cell(manifest.layer_cell(spec))
            w = cell.weights(weights, spec.prefix)
            cell.check_manifest(w, manifest, spec.prefix)
            self.layers.append(Layer(spec, cell, w, get_backend(kernel, cell.name)))
        self.depths = sorted({layer.spec.depth for layer in self.layers})
        self._check_sizes()

    def _check_sizes(self) -> None:
        width = None
        for depth in self.depths:
            group = self.by_depth(depth)
            for layer in group:
                if width is not None and layer.weights.input_size != width:
                    raise ValueError(f"layer '{layer.name}' reads {layer.weights.input_size} inputs, the layers "
                                     f"below give {width}")
            ins = {layer.weights.input_size for layer in group}
            if len(ins) > 1:
                raise ValueError(f"layers of depth {depth} read different input sizes {sorted(ins)}")
            width = sum(layer.weights.hidden_size for layer in group)

    def by_depth(self, depth: int) -> list[Layer]:
        return [layer for layer in self.layers if layer.spec.depth == depth]

    @property
    def input_size(self) -> int:
        return self.by_depth(self.depths[0])[0].weights.input_size

    @property
    def output_size(self) -> int:
        return sum(layer.weights.hidden_size for layer in self.by_depth(self.depths[-1]))

    @property
    def skims(self) -> bool:
        return any(layer.cell.skims for layer in self.layers)

    def prepare(self) -> None:
        for layer in self.layers:
            if layer.backend.name != "reference":
                layer.backend.prepare(layer.weights)

    def thresholds_for(self, threshold: float | list[float]) -> list[float]:
        """One threshold for every depth, or one per depth (lowest first)."""
        if isinstance(threshold, (list, tuple)):
            if len(threshold) != len(self.depths):
                raise ValueError(f"{len(threshold)} thresholds for {len(self.depths)} layers")
            return [float(t) for t in threshold]
        return [float(threshold)] * len(self.depths)

    @property
    def honours_budget(self) -> bool:
        """A budget < 1 can be enforced: every layer skims and its cell takes a budget (a plain LSTM layer
        would spend its full cost whatever the budget)."""
        return all(layer.cell.skims and layer.cell.honours_budget for layer in self.layers)

    def floor_share(self) -> float:
        """The least share of the full recurrent FLOPs a budget can reach (every token skimmed)."""
        from .budget import floor_share

        return max((floor_share(layer.cell, layer.weights) for layer in self.layers if layer.cell.skims),
                   default=1.0)

    def run(self, x: np.ndarray, threshold: float | list[float],
            budget: float | None = None) -> tuple[np.ndarray, list[LayerResult]]:
        """x (T, input_size) -> the top depth's hidden states (T, output_size) and every layer's result.
        budget caps every layer at that share of its full FLOPs (service/engine/budget.py)."""
        results = []
        for depth, thr in zip(self.depths, self.thresholds_for(threshold)):
            outs = []
            for layer in self.by_depth(depth):
                t0 = time.perf_counter()
                out = layer.run(x, thr, budget)
                results.append(LayerResult(layer, out, thr, time.perf_counter() - t0))
                outs.append(out.hs)
            x = outs[0] if len(outs) == 1 else np.ascontiguousarray(np.concatenate(outs, axis=1))
        return x, results

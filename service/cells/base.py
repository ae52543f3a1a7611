"""What a cell is: weights from an artifact, cost of a run, the reference run. See service/cells/__init__.py."""
from __future__ import annotations

import numpy as np

from ..engine.layer import LayerOutput
from ..flops import LayerCost


class Cell:
    name: str = ""
    skims: bool = False  # has a per-token decision (threshold applies)
    honours_budget: bool = False  # its reference and kernels take a LayerBudget (service/engine/budget.py)

    def weights(self, weights: dict[str, np.ndarray], prefix: str):
        """This cell's weights object for the layer `prefix` (checked: raises ValueError on bad shapes).
        It must expose input_size and hidden_size."""
        raise NotImplementedError

    def check_manifest(self, w, manifest, prefix: str) -> None:
        """Check the layer's weights against what the manifest declares about them (ValueError if they
        disagree). Default: nothing to check."""

    def cost(self, w, tokens: int, skimmed: int) -> LayerCost:
        """FLOPs of one run over `tokens` tokens of which `skimmed` took the cheap path (service/flops.py)."""
        raise NotImplementedError

    def reference(self, w, x: np.ndarray, threshold: float, budget=None) -> LayerOutput:
        """The NumPy oracle: x (T, input_size) float32 -> LayerOutput. A cell that skims must honour
        `budget` (a service.engine.budget.LayerBudget, or None) by the rule in that module."""
        raise NotImplementedError

    def weight_names(self, w) -> list[str]:
        """Names (without prefix) of the tensors the layer reads, for error messages and exporters."""
        return []

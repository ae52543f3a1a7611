"""Choose a layer kernel by name; fall back to the reference with a logged reason."""
from __future__ import annotations

import logging
from typing import Callable

from . import reference
from .layer import LayerOutput, LayerWeights

log = logging.getLogger(__name__)

LayerKernel = Callable[[LayerWeights, "np.ndarray", float], LayerOutput]  # noqa: F821


def _load(name: str) -> LayerKernel:
    if name == "reference":
        return reference.run_layer
    if name == "fast":
        from . import fast  # compiled C kernel; ImportError if it was not built

        return fast.run_layer
    if name in ("torch-cuda", "torch-cpu"):
        from . import gpu  # PyTorch (lazy); ImportError without torch or, for torch-cuda, without CUDA

        return gpu.load(name)
    raise ValueError(f"unknown layer kernel '{name}' (known: reference, fast, torch-cuda, torch-cpu)")


def get_layer_kernel(name: str = "fast") -> tuple[str, LayerKernel]:
    """Return (name actually used, kernel). 'fast' falls back to 'reference' if unavailable."""
    try:
        return name, _load(name)
    except ImportError as exc:
        log.warning("layer kernel '%s' unavailable (%s); falling back to the NumPy reference", name, exc)
        return "reference", reference.run_layer

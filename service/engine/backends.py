"""Choose a layer kernel by name; fall back to the reference with a logged reason.

"auto" picks the default kernel of a model family from defaults.json beside this file, which
records the fastest backend per family measured by benchmarks/backends.py (a test keeps the two
in agreement).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
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
    if name == "onnx":
        from . import onnx_backend  # ONNX Runtime; ImportError without onnxruntime

        return onnx_backend.run_layer
    raise ValueError(f"unknown layer kernel '{name}' (known: auto, reference, fast, onnx, torch-cuda, torch-cpu)")


DEFAULTS_FILE = Path(__file__).with_name("defaults.json")


def default_kernel(family: str) -> str:
    """The benchmark-chosen kernel for a model family (defaults.json), 'fast' where none is recorded."""
    try:
        defaults = json.loads(DEFAULTS_FILE.read_text(encoding="utf-8"))["kernel_by_family"]
    except (OSError, KeyError, ValueError) as exc:
        log.warning("cannot read %s (%s); default kernel 'fast'", DEFAULTS_FILE, exc)
        return "fast"
    return defaults.get(family, "fast")


def get_layer_kernel(name: str = "fast") -> tuple[str, LayerKernel]:
    """Return (name actually used, kernel). 'fast' falls back to 'reference' if unavailable.

    'auto' without a family (see default_kernel) means 'fast'."""
    if name == "auto":
        name = "fast"
    try:
        return name, _load(name)
    except ImportError as exc:
        log.warning("layer kernel '%s' unavailable (%s); falling back to the NumPy reference", name, exc)
        return "reference", reference.run_layer

"""Layer backends: one registry of objects, the one place kernel names are listed.

A backend runs layers of the cells it names (`cells`); a layer whose cell it does not support runs on
that cell's NumPy reference instead, with a logged notice (never silently). Optionally a backend runs a
whole model (`model_runner`, e.g. ONNX Runtime over the exported graph), which a family uses when the
task and cell have an exporter.

"auto" is resolved here only: the benchmark-chosen backend per cell in defaults.json beside this file
(written by benchmarks/backends.py; a test keeps the two in agreement), 'fast' where none is recorded.

A new backend: subclass Backend, implement `load` (import what it needs; ImportError if it cannot run
here), `run_layer` and optionally `prepare` / `model_runner`, and add it with `register_backend`.
"""
from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Callable

import numpy as np

from .layer import LayerOutput

log = logging.getLogger(__name__)

DEFAULTS_FILE = Path(__file__).with_name("defaults.json")
GATED = frozenset({"lstm", "skim-lstm"})
ANTMAN = frozenset({"antman-lstm", "antman-skim-lstm"})

LayerKernel = Callable[[object, np.ndarray, float], LayerOutput]


class Backend:
    name: str = ""
    cells: frozenset[str] = frozenset()   # empty: every cell (the reference)
    # enforces a FLOP budget itself (service/engine/budget.py); a backend that does not has its budgeted
    # layers run on budget_backend() instead (stack.Layer.run, logged once)
    enforces_budget: bool = False

    def load(self) -> None:
        """Import what the backend needs; raise ImportError when it cannot run on this machine. Called at
        every model build (imports are cached), so a backend that stopped importing is noticed."""

    def ensure(self) -> "Backend":
        self.load()
        return self

    def supports(self, cell: str) -> bool:
        return not self.cells or cell in self.cells

    def prepare(self, w) -> None:
        """Load-time work for one layer (packing, device copies, warm-up), so no request pays for it."""

    def run_layer(self, w, x: np.ndarray, threshold: float, budget=None) -> LayerOutput:
        """budget: a LayerBudget or None; only passed to backends with enforces_budget."""
        raise NotImplementedError

    def model_runner(self, artifact):
        """A whole-model runner for this artifact, or None (layers are then run one by one)."""
        return None

    def layer_kernel(self) -> LayerKernel:
        """The bare run_layer function (benchmarks call kernels without the object)."""
        return self.run_layer


class ReferenceBackend(Backend):
    """Every cell's own NumPy reference (service/cells/)."""
    name = "reference"
    enforces_budget = True

    def run_layer(self, w, x, threshold, budget=None):
        from ..cells.gated import run_reference

        return run_reference(w, x, threshold, budget)


@functools.cache
def _antman_weights() -> type:
    from ..cells.antman_lstm import AntManWeights  # late: the cells import the engine

    return AntManWeights


class FastBackend(Backend):
    """The compiled C kernels (service/engine/_skimkernel.c; _antmankernel.c for the AntMan cells; built by
    pip). The AntMan cells count as supported only where their extension imports."""
    name = "fast"
    cells = GATED | {"skip-lstm"} | ANTMAN
    enforces_budget = True  # (the AntMan cells take no budget: the dataplane refuses one for them)

    def load(self):
        from . import fast  # ImportError when the extension was not built

        self._mod = fast

    def supports(self, cell):
        if cell in ANTMAN:
            try:
                from . import fast_antman  # noqa: F401
            except ImportError as exc:
                log.warning("the AntMan kernel is not built (%s)", exc)
                return False
        return super().supports(cell)

    def _impl(self, w):
        """fast_antman for AntMan layers (weights holding modules), else fast."""
        if isinstance(w, _antman_weights()):
            from . import fast_antman

            return fast_antman
        return self._mod

    def prepare(self, w):
        self._impl(w).prepare(w)

    def run_layer(self, w, x, threshold, budget=None):
        return self._impl(w).run_layer(w, x, threshold, *([] if budget is None else [budget]))

    def layer_kernel(self):
        return self._mod.run_layer


class OnnxBackend(Backend):
    """ONNX Runtime: a whole exported model where an exporter exists, else one session per layer."""
    name = "onnx"
    cells = GATED

    def load(self):
        from . import onnx_backend  # ImportError without onnxruntime

        self._mod = onnx_backend

    def run_layer(self, w, x, threshold):
        return self._mod.run_layer(w, x, threshold)

    def layer_kernel(self):
        return self._mod.run_layer

    def model_runner(self, artifact):
        from ..onnx_export import has_exporter

        if not has_exporter(artifact):
            return None
        return self._mod.model_runner(artifact)


class TorchBackend(Backend):
    """PyTorch (lazy import): cuDNN for plain LSTM layers, a per-token loop for skim layers."""
    cells = GATED
    enforces_budget = True

    def __init__(self, name: str, device: str | None):
        self.name, self.device = name, device

    _batcher = None

    def load(self):
        from . import gpu  # ImportError without torch or, for torch-cuda, without CUDA

        self._fn = gpu.load(self.name)
        size, wait = OPTIONS["gpu_batch_size"], OPTIONS["gpu_batch_wait_ms"]
        if size > 1 and self._batcher is None:  # dynamic batching (gpu_batch.py), one batcher per backend
            from .gpu_batch import LayerBatcher

            device = self.device or OPTIONS["torch_device"]
            self._batcher = LayerBatcher(lambda w, xs, thr, budgets: gpu.run_layers_on(w, xs, thr, device, None,
                                                                                        budgets), size, wait)

    def run_layer(self, w, x, threshold, budget=None):
        if self._batcher is not None:  # each call keeps its own threshold and budget inside the batch
            return self._batcher.run(w, x, threshold, budget)
        return self._fn(w, x, threshold, budget)

    def layer_kernel(self):
        return self._fn


BACKENDS: dict[str, Backend] = {}

# Backend options, from the server's Settings (service/config.py declares them; create_app calls configure);
# the engine reads no environment variable itself.
OPTIONS = {"onnx_threads": 1, "onnx_opt_level": "all", "torch_device": "cuda", "gpu_batch_size": 1,
           "gpu_batch_wait_ms": 0.0}


def configure(**options) -> None:
    """Set backend options (onnx_threads, onnx_opt_level, torch_device) before models are built."""
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise ValueError(f"unknown backend options {sorted(unknown)} (known: {sorted(OPTIONS)})")
    OPTIONS.update({k: v for k, v in options.items() if v is not None})


def register_backend(backend: Backend) -> Backend:
    BACKENDS[backend.name] = backend
    return backend


for _b in (ReferenceBackend(), FastBackend(), OnnxBackend(), TorchBackend("torch-cuda", None),
           TorchBackend("torch-cpu", "cpu")):
    register_backend(_b)

AUTO = "auto"


def kernel_names() -> list[str]:
    """Every name --kernel accepts."""
    return [AUTO, *BACKENDS]


def default_kernel(cell: str) -> str:
    """The benchmark-chosen backend for a cell (defaults.json), 'fast' where none is recorded."""
    try:
        defaults = json.loads(DEFAULTS_FILE.read_text(encoding="utf-8"))["kernel_by_family"]
    except (OSError, KeyError, ValueError) as exc:
        log.warning("cannot read %s (%s); default kernel 'fast'", DEFAULTS_FILE, exc)
        return "fast"
    return defaults.get(cell, "fast")


def get_backend(name: str, cell: str | None = None) -> Backend:
    """The backend that will run layers of `cell` when `name` is asked for: 'auto' resolved per cell; an
    unavailable backend, or one that does not run this cell, falls back to the reference (logged)."""
    if name == AUTO:
        name = default_kernel(cell) if cell else "fast"
    if name not in BACKENDS:
        raise ValueError(f"unknown layer kernel '{name}' (known: {', '.join(kernel_names())})")
    backend = BACKENDS[name]
    if cell is not None and not backend.supports(cell):
        log.warning("layer kernel '%s' does not run cell '%s'; that cell runs on its NumPy reference", name, cell)
        return BACKENDS["reference"]
    try:
        return backend.ensure()
    except ImportError as exc:
        log.warning("layer kernel '%s' unavailable (%s); falling back to the NumPy reference", name, exc)
        return BACKENDS["reference"]


def budget_backend(cell: str) -> Backend:
    """Where a budgeted layer runs when its backend cannot enforce a budget (ONNX graphs have no budget
    input): the C kernel if it runs the cell here, else the reference."""
    fast = get_backend("fast", cell)
    return fast if fast.enforces_budget else BACKENDS["reference"]


def get_layer_kernel(name: str = "fast") -> tuple[str, LayerKernel]:
    """(name actually used, run_layer function) for the gated cells: benchmarks and tests call kernels bare."""
    backend = get_backend(name)
    if backend.name == "reference":
        from . import reference

        return backend.name, reference.run_layer
    return backend.name, backend.layer_kernel()

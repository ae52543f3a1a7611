"""ONNX Runtime backend: kernel name "onnx".

Two ways in, both behind the engine interface:
- Whole model (what the families use): `model_runner(artifact)` builds one InferenceSession per model
  at load time from the artifact's model.onnx (listed in the manifest, so load_artifact has verified
  its checksum) or, when the artifact has none, from a graph exported in memory from its weights.
  `runner.forward(ids, threshold)` has the signature of Classifier.forward and returns
  (logits, LayerOutput), so a family only has to delegate to it.
- One layer (the layer-kernel interface run_layer(w, x, threshold) -> LayerOutput): a session per
  LayerWeights, built on first use and cached. For families without a whole-model exporter yet.

Session options are set explicitly (SessionOptions): intra-op threads from the onnx_threads setting
(default 1: one request per core, the server parallelises across requests), inter-op threads 1,
sequential execution, graph optimisation level from the onnx_opt_level setting (default "all";
"extended", "basic", "disable"), CPU execution provider. ORT sessions are safe to run from several
threads at once.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort  # ImportError here -> backends.get_layer_kernel falls back to the reference

from .layer import LayerOutput, LayerWeights

NAME = "onnx"
ONNX_FILE = "model.onnx"
OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
log = logging.getLogger(__name__)


def session_options(threads: int | None = None, opt_level: str | None = None) -> ort.SessionOptions:
    from .backends import OPTIONS  # the server's settings (onnx_threads, onnx_opt_level)

    threads = int(OPTIONS["onnx_threads"]) if threads is None else int(threads)
    opt_level = OPTIONS["onnx_opt_level"] if opt_level is None else opt_level
    if opt_level not in OPT_LEVELS:
        raise ValueError(f"onnx_opt_level={opt_level!r}: expected one of {sorted(OPT_LEVELS)}")
    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = OPT_LEVELS[opt_level]
    so.log_severity_level = 3  # errors only (dense graphs carry an unused 'threshold' input on purpose)
    return so


def make_session(model: bytes | str | Path, threads: int | None = None, opt_level: str | None = None):
    src = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(src, session_options(threads, opt_level), providers=["CPUExecutionProvider"])


class OnnxRunner:
    """A whole exported model: forward(ids, threshold) -> (logits, LayerOutput), like Classifier.forward."""

    def __init__(self, session: ort.InferenceSession, source: str):
        self.session = session
        self.source = source  # the file it came from, or "exported in memory"
        self.output_names = [o.name for o in session.get_outputs()]

    def run(self, ids: np.ndarray, threshold: float) -> dict[str, np.ndarray]:
        feeds = {"token_ids": np.ascontiguousarray(ids, dtype=np.int64),
                 "threshold": np.asarray(threshold, dtype=np.float32)}
        return dict(zip(self.output_names, self.session.run(None, feeds)))

    def forward(self, ids: np.ndarray, threshold: float) -> tuple[np.ndarray, LayerOutput]:
        out = self.run(ids, threshold)
        return out["logits"], LayerOutput(out["hs"], out["skim"].astype(bool), out["p_skim"])


def model_runner(artifact, threads: int | None = None) -> OnnxRunner:
    """The runner of an artifact: its verified model.onnx, else a graph exported in memory from its weights."""
    path = Path(artifact.path) / ONNX_FILE
    if ONNX_FILE in artifact.manifest.get("files", {}):
        return OnnxRunner(make_session(path, threads), str(path))
    if path.exists():
        log.warning("%s: %s is not listed in the manifest (no checksum): ignoring it, exporting in memory",
                    artifact.name, path)
    from ..onnx_export import export_model  # needs the onnx package, not torch

    log.info("%s: no %s in the artifact; exporting the graph in memory", artifact.name, ONNX_FILE)
    return OnnxRunner(make_session(export_model(artifact).SerializeToString(), threads), "exported in memory")


# --- the layer-kernel interface ---------------------------------------------------------
_sessions: dict[int, tuple[LayerWeights, ort.InferenceSession]] = {}
_lock = threading.Lock()


def _layer_session(w: LayerWeights) -> ort.InferenceSession:
    entry = _sessions.get(id(w))
    if entry is None or entry[0] is not w:
        from ..onnx_export.layers import layer_model

        with _lock:
            entry = _sessions.get(id(w))
            if entry is None or entry[0] is not w:
                entry = (w, make_session(layer_model(w).SerializeToString()))  # keep w alive: id stays unique
                _sessions[id(w)] = entry
    return entry[1]


def run_layer(w: LayerWeights, x: np.ndarray, threshold: float) -> LayerOutput:
    hs, skim, p_skim = _layer_session(w).run(None, {"x": np.ascontiguousarray(x, dtype=np.float32),
                                                    "threshold": np.asarray(threshold, dtype=np.float32)})
    return LayerOutput(hs, skim.astype(bool), p_skim)

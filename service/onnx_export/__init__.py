"""Export skimserve artifacts to ONNX, from the NumPy weights with onnx.helper (no torch).

Every exported model takes token_ids (int64 [T]) and threshold (float32 scalar; ignored by dense
models so that callers are uniform) and returns the family's outputs; classifiers return
logits [n_labels], hs [T, d], skim [T] bool and p_skim [T] float32.

A model plugs in by registering an exporter (Artifact -> onnx.ModelProto) for its task and cells:

    @register("my-task", "lstm", "skim-lstm")
    def export_my_task(artifact): ...

built from the pieces of layers.py (add_layer for each recurrent layer/direction) and graph.py.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import onnx

from ..artifacts import MANIFEST, Artifact, load_artifact, refresh_checksums
from .graph import OPSET  # noqa: F401

ONNX_FILE = "model.onnx"
EXPORTERS: dict[tuple[str, str], Callable[[Artifact], onnx.ModelProto]] = {}


def register(task: str, *cells: str):
    def deco(fn):
        for cell in cells:
            EXPORTERS[(task, cell)] = fn
        return fn
    return deco


def _key(artifact: Artifact) -> tuple[str, str]:
    spec = artifact.spec
    if spec is not None:
        return spec.task, spec.cell
    return artifact.manifest["task"], artifact.manifest["family"]


def has_exporter(artifact: Artifact) -> bool:
    return _key(artifact) in EXPORTERS and (artifact.spec is None or len(artifact.spec.layers) == 1
                                            or _key(artifact)[0] != "classify")


def export_model(artifact: Artifact) -> onnx.ModelProto:
    key = _key(artifact)
    if key not in EXPORTERS:
        raise ValueError(f"{artifact.name}: no ONNX exporter for task '{key[0]}' with cell '{key[1]}' "
                         f"(known: {sorted(EXPORTERS)})")
    return EXPORTERS[key](artifact)


def export_artifact(folder: Path | str) -> Path:
    """Write model.onnx into an artifact folder and re-sign the manifest with its checksum."""
    folder = Path(folder)
    artifact = load_artifact(folder)  # verifies the existing checksums first
    model = export_model(artifact)
    path = folder / ONNX_FILE
    onnx.save_model(model, str(path))
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    manifest["files"][ONNX_FILE] = ""
    manifest["onnx"] = {"file": ONNX_FILE, "opset": OPSET,
                        "inputs": [i.name for i in model.graph.input], "outputs": [o.name for o in model.graph.output]}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    refresh_checksums(folder)
    return path


from . import classifier  # noqa: E402,F401  (registers the classifier families)

"""Model families: manifest 'family' -> the class that serves it. A new family registers here."""
from __future__ import annotations

from ..artifacts import Artifact
from ..engine.backends import default_kernel
from .base import ServedModel
from .classifier import Classifier

FAMILIES: dict[str, type[ServedModel]] = {
    "lstm": Classifier,
    "skim-lstm": Classifier,
}


def build_model(artifact: Artifact, kernel: str = "auto") -> ServedModel:
    """kernel='auto': the family's benchmark-chosen default (service/engine/defaults.json)."""
    family = artifact.manifest["family"]
    if family not in FAMILIES:
        raise ValueError(f"{artifact.name}: unknown model family '{family}' (known: {sorted(FAMILIES)})")
    if kernel == "auto":
        kernel = default_kernel(family)
    return FAMILIES[family](artifact, kernel)

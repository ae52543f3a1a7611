"""Served models, one module per task's model (classifier.py, qa.py). build_model picks the class by the
manifest's task (service/tasks/); the layers are built from the manifest's cell (service/cells/)."""
from __future__ import annotations

from ..artifacts import Artifact
from .base import ServedModel


def build_model(artifact: Artifact, kernel: str = "auto") -> ServedModel:
    """kernel='auto': each cell's benchmark-chosen backend (service/engine/defaults.json)."""
    from ..tasks import TASKS

    task = artifact.spec.task
    if task not in TASKS:
        raise ValueError(f"{artifact.name}: unknown task '{task}' (known: {', '.join(sorted(TASKS))})")
    return TASKS[task].model_class(artifact, kernel)

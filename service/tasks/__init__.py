"""Tasks: what a model answers (manifest 'task') -> the Task that serves its endpoint. A new task is a
module here that registers itself (its model class lives in service/families/)."""
from __future__ import annotations

from .base import Params, Task

TASKS: dict[str, Task] = {}


def register_task(cls: type[Task]) -> type[Task]:
    TASKS[cls.name] = cls()
    return cls


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task '{name}' (known: {', '.join(sorted(TASKS))})")
    return TASKS[name]


from . import classify, qa  # noqa: E402,F401  (register the shipped tasks)

__all__ = ["TASKS", "Params", "Task", "get_task", "register_task"]

"""What a task does for its endpoint, whatever the transport: cheap input checks (on the event loop), the
model work and its metrics (on a pool thread), warm-up, and the response envelope. The request path
around it (model lookup, the task check, default threshold, pool hop) is service/dataplane.py."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Params:
    """Per-request knobs shared by every task. threshold: one value, or one per layer depth.
    budget: None or the share (0, 1] of the full model's FLOPs the request may spend (engine/budget.py).
    threshold_source: why this threshold: request, budget, default or load (dataplane.params)."""
    threshold: float | tuple[float, ...]
    explain: bool = False
    extra: dict = field(default_factory=dict)
    budget: float | None = None
    threshold_source: str = "default"


class Task:
    name: str = ""
    model_class: type = object   # the ServedModel subclass that answers this task

    def inputs(self, body) -> list:
        """The validated request body -> the list of items to answer (one per result)."""
        raise NotImplementedError

    def check(self, items: list, limits) -> None:
        """Cheap checks before any model work is queued; raise dataplane.InputError."""

    def run(self, model, items: list, params: Params, limits) -> list[dict]:
        """CPU-bound, on a pool thread: every item checked before any is answered, then answered, metrics
        recorded, result dicts returned in order."""
        raise NotImplementedError

    def warm(self, model) -> None:
        """Pay the first calls' lazy setup (allocations, caches) before readiness."""

    def envelope(self, ref: dict, body, results: list[dict]) -> dict:
        """The response: one item -> flat, a batch -> {'results': [...]}."""
        raise NotImplementedError

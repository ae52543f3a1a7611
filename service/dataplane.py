"""The request path without HTTP: find the model, check it answers the task, resolve the threshold, check
the inputs, run the task on the pool, shape the envelope. service/api/ (the transport) calls this; tests
and other transports can call it directly.

Path of one request: api/routes.py -> dataplane.py (here) -> tasks/<task>.py -> families/<model>.py
-> engine/stack.py -> engine/backends.py (layer kernels of each cell).
"""
from __future__ import annotations

import sys
import time

from .inputs import InputError, Limits, check_texts  # noqa: F401  (re-exported: the transport's error type)
from .pool import WorkPool
from .registry import ModelEntry, Registry
from .tasks import Params, get_task

RETRY_AFTER_S = "1"


class NotReady(InputError):
    def __init__(self):
        super().__init__(503, "not_ready", "models are still loading; retry shortly")
        self.headers = {"Retry-After": RETRY_AFTER_S}


def resolve_threshold(entry: ModelEntry, threshold, budget: float | None = None,
                      controller=None) -> tuple[float | tuple[float, ...], str]:
    """The threshold a request runs at and why (`threshold_source`), for every transport:
    - the request's own threshold (one, or a list with one per layer depth): "request";
    - none, with a budget: the model's calibrated threshold for that budget (manifest `calibration`, rule
      chosen on dev) -> "budget", or the model's default when its rule is to let the cap alone act;
    - none and no budget: the model's default, or the latency-objective controller's lower one under load
      (service/loadcontrol.py) -> "default" / "load".
    Raises InputError 400 budget_unsupported for a budget < 1 on a model with a plain LSTM layer, 422 for a
    per-layer list of the wrong length."""
    model = entry.model
    if budget is not None and budget < 1.0 and not model.stack.honours_budget:
        raise InputError(400, "budget_unsupported",
                         f"model '{entry.name}' ({model.cell}) cannot spend less than its full cost: a budget "
                         "below 1 needs a model whose every layer skims (a skim-lstm or skip-lstm model)")
    if threshold is None:
        if budget is not None:
            by_budget = model.calibration.threshold_for_budget(budget) if model.calibration is not None else None
            return (by_budget, "budget") if by_budget is not None else (model.default_threshold, "default")
        if controller is not None:
            return controller.threshold_for(model)
        return model.default_threshold, "default"
    if isinstance(threshold, (list, tuple)):
        depths = len(model.stack.depths)
        if len(threshold) != depths:
            raise InputError(422, "invalid_threshold",
                             f"{len(threshold)} thresholds for a model with {depths} layer(s)")
        return tuple(float(t) for t in threshold), "request"
    return float(threshold), "request"


class Dataplane:
    def __init__(self, registry: Registry, pool: WorkPool, limits: Limits):
        self.registry, self.pool, self.limits = registry, pool, limits
        self.controller = None  # a loadcontrol.LoadController in latency-objective mode (app.create_app)
        self._served: tuple[int, frozenset[str]] | None = None

    def entry(self, task: str, name: str | None) -> ModelEntry:
        """The named (or default) model, which must answer `task` (else 400 wrong_task)."""
        if not self.registry.ready:
            raise NotReady()
        if name is None and task not in self._tasks():
            raise InputError(404, "no_model_for_task", f"no served model answers '{task}' "
                                                       f"(served: {', '.join(self.registry.names()) or 'none'})")
        entry = self.registry.get(name, task)
        if entry.model.task != task:
            raise InputError(400, "wrong_task", f"model '{entry.name}' answers '{entry.model.task}', not '{task}' "
                                                f"(models for '{task}': {', '.join(self.registry.names(task)) or 'none'})")
        return entry

    def _tasks(self) -> frozenset[str]:
        """The tasks the served models answer (computed again only when the registry's models change)."""
        entries = self.registry.entries
        if self._served is None or self._served[0] != len(entries):
            self._served = (len(entries), frozenset(e.model.task for e in entries.values()))
        return self._served[1]

    def params(self, entry: ModelEntry, threshold, explain: bool = False, budget: float | None = None,
               **extra) -> Params:
        """threshold None -> resolve_threshold's choice; a list -> one per layer depth (checked against the
        model). budget: the FLOP cap (engine/budget.py); the threshold decides, the budget caps."""
        thr, source = resolve_threshold(entry, threshold, budget, self.controller)
        return Params(thr, explain, extra, budget, source)

    def _items(self, entry: ModelEntry, body):
        task = get_task(entry.model.task)
        items = task.inputs(body)
        task.check(items, self.limits)  # on the caller's thread: a bad batch never reaches the pool
        return task, items

    @staticmethod
    def _envelope(task, entry: ModelEntry, body, params: Params, results: list[dict]) -> dict:
        thr = params.threshold
        ref = {"model": entry.name, "version": entry.model.version, "kernel": entry.model.kernel_name,
               "threshold": list(thr) if isinstance(thr, tuple) else thr, "threshold_source": params.threshold_source}
        if params.budget is not None:  # absent when none was sent (both transports answer the same)
            ref["budget"] = params.budget
        return task.envelope(ref, body, results)

    async def run(self, entry: ModelEntry, body, params: Params) -> dict:
        task, items = self._items(entry, body)
        t0 = time.perf_counter()
        results = await self.pool.run(task.run, entry.model, items, params, self.limits)
        self.observe(entry, params, time.perf_counter() - t0)
        return self._envelope(task, entry, body, params, results)

    def observe(self, entry: ModelEntry, params: Params, seconds: float) -> None:
        """After each answered request (any transport): the threshold-source count and the controller's
        latency sample (pool wait + model work)."""
        metrics = sys.modules.get(f"{__package__}.metrics")
        if metrics is None:  # not at import: the CLI imports this before it sets up multiprocess metrics
            from . import metrics
        metrics.record_threshold_source(entry.name, params.threshold_source)
        if self.controller is not None:
            self.controller.observe(seconds)

    def run_sync(self, entry: ModelEntry, body, params: Params) -> dict:
        """The same path without the pool (in-process callers)."""
        task, items = self._items(entry, body)
        return self._envelope(task, entry, body, params, task.run(entry.model, items, params, self.limits))

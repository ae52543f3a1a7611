"""Latency-objective mode: under load, lower the default threshold of requests that did not set one, along
each model's calibrated curve, down to a floor; go back to the default as load falls.

`skimserve serve --latency-objective-ms 20 [--min-threshold 0.1]` (SKIMSERVE_LATENCY_OBJECTIVE_MS,
SKIMSERVE_MIN_THRESHOLD). One controller per worker process, fed by that worker's own requests and queue:

- it keeps, for the last `window_s` seconds, the latencies of answered requests (body read to answer, pool
  wait included) and the event loop's lag (how late a 5 ms timer fires: the time a request that has arrived
  waits before the loop reads it; small requests run on the loop, so their queue is there, not in the pool);
- every `tick_s` it decides on the estimate p99(latency) + p99(lag): the objective is *at risk* when the
  estimate exceeds `risk` x objective or jobs wait for a pool thread beyond `queue_risk` per thread; then
  the level goes one step down the curve. It is *relaxed* when the estimate is under `relax` x objective and
  no job waits; after `hold_s` of relaxed ticks the level goes one step back up. In between it holds.
- level k means: for each skimming model, the k-th threshold of its steps (its default, then the lower
  curve thresholds down to `--min-threshold`; the last one once k passes the end).

Requests that set a threshold or a budget are never touched (dataplane.resolve_threshold). Every decision is
visible: the response says `threshold_source: load`, and Prometheus has `skimserve_load_level` and
`skimserve_threshold_source_total{source}` (the share of load-lowered requests).
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

GRID = [round(0.1 * i, 1) for i in range(11)]


def threshold_steps(model, floor: float) -> list[float]:
    """A model's thresholds from its default down to the floor: its calibrated curve's grid, or without a
    calibration the 0.1 grid (the same grid training.calibrate_curve measures)."""
    default = float(model.default_threshold)
    if model.calibration is not None:
        return model.calibration.steps(floor, default)
    below = sorted({t for t in GRID if floor <= t < default}, reverse=True)
    return [default, *below] if below else [default]


class LoadController:
    def __init__(self, objective_ms: float, min_threshold: float, queue_depth: Callable[[], int], threads: int,
                 *, window_s: float = 1.0, tick_s: float = 0.1, hold_s: float = 2.0, risk: float = 0.6,
                 relax: float = 0.3, queue_risk: float = 1.0, clock: Callable[[], float] = time.monotonic):
        if objective_ms <= 0:
            raise ValueError(f"latency objective must be > 0 ms (got {objective_ms})")
        self.objective_s = objective_ms / 1000.0
        self.min_threshold = float(min_threshold)
        self.queue_depth, self.threads = queue_depth, max(1, threads)
        self.window_s, self.tick_s, self.hold_s = window_s, tick_s, hold_s
        self.risk, self.relax, self.queue_risk = risk, relax, queue_risk
        self.clock = clock
        self.level = 0
        self.max_level = 0
        self._samples: deque[tuple[float, float]] = deque()
        self._lags: deque[tuple[float, float]] = deque()
        self._lock = threading.Lock()
        self._last_tick = clock()
        self._relaxed_since: float | None = None
        self._steps: dict[str, list[float]] = {}

    def register(self, model) -> None:
        """Called once per served model at startup: its steps fix how deep the level can go."""
        if not any(layer.cell.skims for layer in model.stack.layers):
            return  # a plain LSTM has no dial
        steps = threshold_steps(model, self.min_threshold)
        self._steps[model.name] = steps
        self.max_level = max(self.max_level, len(steps) - 1)

    def threshold_for(self, model) -> tuple[float, str]:
        """(threshold, source) for a request to `model` that set neither a threshold nor a budget."""
        self._maybe_tick()
        steps = self._steps.get(model.name)
        if not steps or self.level == 0:
            return float(model.default_threshold), "default"
        thr = steps[min(self.level, len(steps) - 1)]
        return (thr, "load") if thr < steps[0] else (thr, "default")

    def observe(self, latency_s: float) -> None:
        now = self.clock()
        with self._lock:
            self._samples.append((now, latency_s))
        self._maybe_tick(now)

    def observe_lag(self, lag_s: float) -> None:
        now = self.clock()
        with self._lock:
            self._lags.append((now, max(0.0, lag_s)))
        self._maybe_tick(now)

    def _p99(self, samples: deque, now: float) -> float | None:
        with self._lock:
            while samples and samples[0][0] < now - self.window_s:
                samples.popleft()
            values = [s for _, s in samples]
        return float(np.percentile(values, 99)) if values else None

    def estimate(self, now: float | None = None) -> float | None:
        """p99 latency + p99 loop lag over the window, seconds (None: no request in the window)."""
        now = self.clock() if now is None else now
        p99, lag = self._p99(self._samples, now), self._p99(self._lags, now)
        return None if p99 is None else p99 + (lag or 0.0)

    def _maybe_tick(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        if now - self._last_tick < self.tick_s:
            return
        with self._lock:
            if now - self._last_tick < self.tick_s:
                return
            self._last_tick = now
        self.tick(now)

    def tick(self, now: float | None = None) -> int:
        """One control decision; returns the new level."""
        now = self.clock() if now is None else now
        est = self.estimate(now)
        waiting = self.queue_depth()
        at_risk = (est is not None and est > self.risk * self.objective_s) or \
            waiting > self.queue_risk * self.threads
        relaxed = waiting == 0 and (est is None or est < self.relax * self.objective_s)
        if at_risk:
            self._relaxed_since = None
            self.level = min(self.level + 1, self.max_level)
        elif relaxed and self.level > 0:
            if self._relaxed_since is None:
                self._relaxed_since = now
            elif now - self._relaxed_since >= self.hold_s:
                self.level -= 1
                self._relaxed_since = now
        else:
            self._relaxed_since = None
        from . import metrics  # not at import: the CLI sets up multiprocess metrics first

        metrics.LOAD_LEVEL.set(self.level)
        return self.level


async def watch_loop_lag(ctl: LoadController, period_s: float = 0.005) -> None:
    """Feeds the controller the event loop's lag until cancelled (app lifespan)."""
    loop = asyncio.get_running_loop()
    while True:
        t = loop.time()
        await asyncio.sleep(period_s)
        ctl.observe_lag(loop.time() - t - period_s)

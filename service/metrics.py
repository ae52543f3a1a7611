"""Prometheus collectors of the service, the one place their names and labels are fixed (the Grafana dashboards in
dashboards/ query exactly these names and labels), and the /metrics rendering.

Several uvicorn workers: prometheus-client's multiprocess mode. When PROMETHEUS_MULTIPROC_DIR is set
(the CLI sets it for --workers > 1) every process writes its samples to files there and /metrics merges
them, so any worker answers the scrape with the totals of all. The variable must be set before
prometheus_client is imported, which is why the CLI sets it before uvicorn spawns the workers.
Gauges use "live" modes so a dead worker's in-flight count and model info vanish with it.
"""
from __future__ import annotations

import os
from bisect import bisect_left

from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram,
                               disable_created_metrics, generate_latest, multiprocess)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

disable_created_metrics()  # no *_created series: same exposition in single- and multiprocess mode

_STEP_05 = [round(0.05 * i, 2) for i in range(1, 21)]  # 0.05 .. 1.0

REQUEST_DURATION = Histogram(
    "skimserve_request_duration_seconds", "HTTP request duration, from first byte in to response out.",
    ["endpoint", "model", "status"],
    buckets=[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10])
TOKEN_LATENCY = Histogram(
    "skimserve_token_latency_seconds", "Model wall time per token (model latency / tokens), per text.",
    ["model"], buckets=[1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2])
SKIM_RATE = Histogram(
    "skimserve_skim_rate", "Share of a text's tokens that were skimmed (0..1), per text.",
    ["model"], buckets=_STEP_05)
TOKENS = Counter(
    "skimserve_tokens_total", "Tokens processed, by decision: read (big cell) or skim (small cell).",
    ["model", "decision"])
FLOPS = Counter("skimserve_flops_total", "Model FLOPs spent (multiply-add = 2 FLOPs).", ["model"])
FLOP_REDUCTION = Histogram(
    "skimserve_flop_reduction", "flops_full / flops per text (1.0 = no savings).",
    ["model"], buckets=[0.9, 0.95, 1.0, 1.1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10])
THRESHOLD = Histogram(
    "skimserve_threshold", "Skim threshold of a request (0..1), per request (QA: per layer threshold).",
    ["model"], buckets=[0.0, *_STEP_05])
LAYER_TOKENS = Counter(
    "skimserve_layer_tokens_total", "Layer-steps by layer (and direction) and decision: read or skim.",
    ["model", "layer", "decision"])
LAYER_SKIM_RATE = Histogram(
    "skimserve_layer_skim_rate", "Share of a request's steps skimmed in one layer/direction (0..1).",
    ["model", "layer"], buckets=_STEP_05)
THRESHOLD_SOURCE = Counter(
    "skimserve_threshold_source_total", "Requests by why their threshold was chosen: request, budget, default, "
    "or load (lowered by the latency-objective controller).", ["model", "source"])
LOAD_LEVEL = Gauge("skimserve_load_level", "Latency-objective controller: steps below the default threshold "
                   "(0 = defaults; max over workers).", multiprocess_mode="max")
INFLIGHT = Gauge("skimserve_inflight_requests", "HTTP requests being handled (excluding /metrics).",
                 multiprocess_mode="livesum")
QUEUE_DEPTH = Gauge("skimserve_queue_depth", "Model jobs waiting for a pool thread.",
                    multiprocess_mode="livesum")
MODEL_INFO = Gauge("skimserve_model_info", "Served models (value 1): version, family, task and kernel.",
                   ["model", "version", "family", "task", "kernel"], multiprocess_mode="livemax")
# (An Info collector is exposed the same way, as a gauge named *_info with value 1, but multiprocess mode
# does not support Info; a labelled gauge works in both modes.)


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def mark_process_dead(pid: int | None = None) -> None:
    """Drop this worker's live gauges from the merged view (called on worker shutdown)."""
    if multiprocess_enabled():
        multiprocess.mark_process_dead(os.getpid() if pid is None else pid)


def record_model_info(name: str, version: str, family: str, task: str, kernel: str) -> None:
    MODEL_INFO.labels(model=name, version=version, family=family, task=task, kernel=kernel).set(1)


class _Histogram:
    """A labelled histogram child's observe() without the per-call checks and the linear bucket search:
    the same values (the sum, and the count of the first bucket whose bound is >= the amount; NaN counts in
    the sum only, as prometheus_client does), through the child's own value objects, so the exposition
    and multiprocess mode are prometheus_client's. tests/test_metrics_fast.py holds the two equal."""
    __slots__ = ("bounds", "sum", "buckets", "child")

    def __init__(self, child):
        self.child = child
        self.bounds, self.sum, self.buckets = child._upper_bounds, child._sum, child._buckets

    def observe(self, amount: float) -> None:
        self.sum.inc(amount)
        if amount == amount:  # not NaN
            self.buckets[bisect_left(self.bounds, amount)].inc(1)


class _Counter:
    """A labelled counter child's inc() for amounts known to be >= 0 (token counts, FLOPs)."""
    __slots__ = ("value", "child")

    def __init__(self, child):
        self.child, self.value = child, child._value

    def inc(self, amount: float = 1) -> None:
        self.value.inc(amount)


def _fast(child):
    """The lean wrapper of a histogram or counter child, or the child itself where its internals differ."""
    try:
        return _Histogram(child) if isinstance(child, Histogram) else _Counter(child)
    except AttributeError:  # pragma: no cover - another prometheus_client layout: its public methods
        return child


class _ModelSeries:
    """One model's labelled children, looked up once: `labels()` costs microseconds per call, and a
    request records half a dozen series (docs/request-path.md)."""

    def __init__(self, model: str):
        self.model = model
        self.read, self.skim = _fast(TOKENS.labels(model, "read")), _fast(TOKENS.labels(model, "skim"))
        self.flops, self.skim_rate = _fast(FLOPS.labels(model)), _fast(SKIM_RATE.labels(model))
        self.flop_reduction, self.token_latency = (_fast(FLOP_REDUCTION.labels(model)),
                                                   _fast(TOKEN_LATENCY.labels(model)))
        self.threshold = _fast(THRESHOLD.labels(model))
        self.layers: dict[str, tuple] = {}
        self.sources: dict[str, _Counter] = {}

    def layer(self, name: str) -> tuple:
        series = self.layers.get(name)
        if series is None:
            series = self.layers[name] = (_fast(LAYER_TOKENS.labels(self.model, name, "read")),
                                          _fast(LAYER_TOKENS.labels(self.model, name, "skim")),
                                          _fast(LAYER_SKIM_RATE.labels(self.model, name)))
        return series

    def source(self, name: str):
        counter = self.sources.get(name)
        if counter is None:
            counter = self.sources[name] = _fast(THRESHOLD_SOURCE.labels(self.model, name))
        return counter


_SERIES: dict[str, _ModelSeries] = {}


def _series(model: str) -> _ModelSeries:
    series = _SERIES.get(model)
    if series is None:
        series = _SERIES[model] = _ModelSeries(model)
    return series


def record_threshold(model: str, threshold: float) -> None:
    """Once per classify request (a batch shares one threshold)."""
    _series(model).threshold.observe(threshold)


def record_threshold_source(model: str, source: str) -> None:
    """Once per answered request: why its threshold was chosen."""
    _series(model).source(source).inc()


def record_cost(model: str, cost) -> None:
    """One answered item (a text, a question) and its cost (service.families.base.Cost)."""
    s = _series(model)
    tokens, skimmed = cost.tokens, cost.skimmed
    s.read.inc(tokens - skimmed)
    s.skim.inc(skimmed)
    s.flops.inc(cost.flops)
    s.skim_rate.observe(cost.skim_rate)
    s.flop_reduction.observe(cost.flop_reduction)
    if tokens:
        s.token_latency.observe(cost.latency_ms / 1000.0 / tokens)
    if len(cost.per_layer) > 1:  # single-layer models: the model-wide series above say it all
        for layer in cost.per_layer:
            read, skim, rate = s.layer(layer["layer"])
            read.inc(layer["tokens"] - layer["skimmed"])
            skim.inc(layer["skimmed"])
            rate.observe(layer["skim_rate"])


_REQUEST_SERIES: dict[tuple[str, str, str], object] = {}


def observe_request(endpoint: str, model: str, status: str, seconds: float) -> None:
    """One HTTP request's duration (the labels' child looked up once per label set)."""
    key = (endpoint, model, status)
    child = _REQUEST_SERIES.get(key)
    if child is None:
        child = _REQUEST_SERIES[key] = _fast(REQUEST_DURATION.labels(endpoint, model, status))
    child.observe(seconds)


record_classification = record_cost  # the name before tasks other than classify existed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def drop_dead_workers(path: str | None = None) -> list[int]:
    """Live gauges of workers that died without shutting down (kill -9, OOM) would be summed forever:
    prometheus_client drops a worker's live files only in mark_process_dead, which a killed worker never
    runs. Before each multiprocess scrape, mark every worker whose process is gone as dead."""
    path = path or os.environ.get(MULTIPROC_ENV)
    dead = set()
    for name in os.listdir(path):
        if name.startswith("gauge_live") and name.endswith(".db"):
            pid = name[:-3].rpartition("_")[2]
            if pid.isdigit() and not _pid_alive(int(pid)):
                dead.add(int(pid))
    for pid in sorted(dead):
        try:
            multiprocess.mark_process_dead(pid, path)
        except FileNotFoundError:  # another worker's scrape removed it first
            pass
    return sorted(dead)


# Callables giving the requests that wait unread in this process's connections (service/api/protocol.py):
# counted in flight while a scrape reads the gauge, since requests answered inline are never in flight.
WAITING: list = []


def render() -> tuple[bytes, str]:
    """The text exposition of this process, or of all workers in multiprocess mode (there, the waiting
    requests of the worker that answers the scrape; the others' gauges count their ASGI requests)."""
    waiting = sum(count() for count in WAITING)
    if waiting:
        INFLIGHT.inc(waiting)
    try:
        if multiprocess_enabled():
            drop_dead_workers()
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    finally:
        if waiting:
            INFLIGHT.dec(waiting)

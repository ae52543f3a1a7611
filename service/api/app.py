"""The FastAPI application factory: settings + registry + pool + routes + error mapping + request metrics.

Models load in the lifespan startup, before uvicorn accepts connections; a bad artifact therefore stops
the process at startup with the artifact's error, and /readyz answers 503 whenever models are not (or no
longer) loaded and warmed.
"""
from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI

from .. import __version__, metrics
from ..config import Settings
from ..dataplane import Dataplane, Limits
from ..engine.backends import configure as configure_backends
from ..pool import WorkPool
from ..registry import Registry, RegistryError
from . import budget_doc, errors, oip, openapi, routes, ui
from .admission import AdmissionMiddleware, BodyBudget
from .fast_path import FastPath
from .schemas import THRESHOLD_DOC

log = logging.getLogger("service")

DESCRIPTION = f"""Skim-LSTM text classifiers with a per-request cost dial.

**The threshold.** {THRESHOLD_DOC}

Every response reports what the request cost: `tokens`, `skimmed`, `skim_rate`, `flops`, `flops_full`,
`flop_reduction` (= flops_full / flops), `latency_ms` (model wall time) and `per_token_us`.

Errors are JSON `{{"detail": ..., "code": ...}}` with a 4xx status for bad input and 503 + `Retry-After`
when the server is loading or its queue is full.
"""


DOC_PATHS = ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")  # FastAPI's own routes


class MetricsMiddleware:
    """Pure ASGI middleware: request duration by route template, model and status; in-flight gauge.

    The route template (not the raw path) keeps label values bounded; unmatched paths count as
    'unmatched'. The route handler names the model through scope['skimserve']['model']."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        info = scope["skimserve"] = {"model": ""}
        status = [500]
        count = scope["path"] != "/metrics"  # a scrape is not traffic

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        if count:
            metrics.INFLIGHT.inc()
        try:
            await self.app(scope, receive, send_and_note)
        finally:
            if count:
                metrics.INFLIGHT.dec()
            route = scope.get("route")
            endpoint = (info.get("endpoint") or getattr(route, "path", None)
                        or (scope["path"] if scope["path"] in DOC_PATHS else "unmatched"))
            metrics.observe_request(endpoint, info["model"], str(status[0]), time.perf_counter() - t0)


def load_controller(settings: Settings, dataplane: Dataplane, registry: Registry):
    """The latency-objective controller (service/loadcontrol.py), or None when the mode is off."""
    if not settings.latency_objective_ms:
        return None
    from ..loadcontrol import LoadController

    ctl = LoadController(settings.latency_objective_ms, settings.min_threshold, lambda: dataplane.pool.waiting,
                         settings.threads)
    for entry in registry.entries.values():
        ctl.register(entry.model)
    log.info("latency objective %.1f ms: default thresholds may go down to %.2f under load (%d steps at most)",
             settings.latency_objective_ms, settings.min_threshold, ctl.max_level)
    return ctl


def create_app(settings: Settings | None = None, registry: Registry | None = None) -> FastAPI:
    """A registry that is already loaded (tests) is served as is; otherwise the startup loads it."""
    settings = settings or Settings.from_env()
    configure_backends(onnx_threads=settings.onnx_threads, onnx_opt_level=settings.onnx_opt_level,
                       torch_device=settings.torch_device, gpu_batch_size=settings.gpu_batch_size,
                       gpu_batch_wait_ms=settings.gpu_batch_wait_ms)
    registry = registry or Registry(settings.models_dir, settings.kernel, settings.default_model)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if not registry.ready:
            try:
                registry.load_all()  # blocking on purpose: nothing is served until this is done
            except RegistryError as exc:
                log.critical("startup failed: %s", exc)
                raise
        if getattr(app.state, "freeze_gc", False):
            freeze_startup_objects()
        for entry in registry.entries.values():
            m = entry.model
            metrics.record_model_info(m.name, m.version, m.cell, m.task, m.kernel_name)
        if app.state.pool.closed:
            app.state.pool = WorkPool(settings.threads, settings.max_queue)
            app.state.dataplane.pool = app.state.pool
        ctl = app.state.dataplane.controller = load_controller(settings, app.state.dataplane, registry)
        metrics.LOAD_LEVEL.set(0)  # exported from the start (0 = defaults; also when the mode is off)
        lag_watch = None
        if ctl is not None:
            from ..loadcontrol import watch_loop_lag

            lag_watch = asyncio.get_running_loop().create_task(watch_loop_lag(ctl))
        # The loaded models are millions of long-lived objects: moved out of the collector's sight, so that
        # a full collection (every ~100 requests' worth of allocations) no longer walks them all.
        gc.collect()
        gc.freeze()
        log.info("serving %d models (%s), default %s; %d model threads, queue %d", len(registry.entries),
                 ", ".join(registry.names()), registry.default_name, settings.threads, settings.max_queue)
        try:
            yield
        finally:
            if lag_watch is not None:
                lag_watch.cancel()
            app.state.pool.shutdown(wait=False)
            metrics.mark_process_dead()

    # FastAPI's native OpenTelemetry hooks off: they ask the OTel providers on every request, and the
    # service's telemetry is its Prometheus metrics (service/metrics.py).
    app = FastAPI(title="skimserve", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  telemetry={"tracing": False, "metrics": False, "logs": False})
    app.state.settings = settings
    app.state.registry = registry
    app.state.limits = Limits(settings.max_text_bytes, settings.max_tokens, settings.max_batch,
                              settings.max_answer_tokens)
    app.state.pool = WorkPool(settings.threads, settings.max_queue)
    app.state.dataplane = Dataplane(registry, app.state.pool, app.state.limits)
    app.state.body_budget = BodyBudget(settings.max_inflight_body_bytes)
    errors.install(app)
    app.include_router(routes.router)
    app.include_router(ui.router)  # the browser page at /ui (service/ui/)
    budget_doc.install(app)
    app.include_router(oip.router)  # the Open Inference Protocol at /v2 (service/api/oip.py)
    app.add_middleware(FastPath, state=app.state)  # innermost: inside admission and the request metrics
    app.add_middleware(AdmissionMiddleware, state=app.state)  # limits and shedding before any body is read
    app.add_middleware(MetricsMiddleware)
    openapi.install(app, settings)  # the schema says what the server enforces
    return app


def freeze_startup_objects() -> None:
    """Move everything alive after startup (the models, vocabularies, routes) out of the collector's
    reach. A full collection walked it all, the vocabularies' dicts above all: about 20 ms on the
    development machine, taken on whichever thread allocated at the wrong moment, the event loop's
    included (a liveness probe waited for it) or a model thread holding the GIL (the loop then waited).
    What requests allocate is still collected as before."""
    gc.collect()
    gc.freeze()


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters (malloc.h)
BIG_BUFFER = 128 * 1024


def return_freed_memory_to_the_os() -> bool:
    """glibc raises its mmap threshold each time a big mmapped buffer is freed (up to 32 MB), so after a few
    big request bodies every later body lands on the heap, which is not given back when freed: the
    server stayed hundreds of MB above its idle size after a burst of big bodies (issue 20). A fixed
    threshold keeps buffers over 128 KiB mmapped (unmapped when freed) and the heap trimmed. No-op off glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, BIG_BUFFER) and libc.mallopt(M_TRIM_THRESHOLD, BIG_BUFFER))
    except (OSError, AttributeError):
        return False


def app_from_env() -> FastAPI:
    """uvicorn factory (`service.api.app:app_from_env`): each worker process builds its app from SKIMSERVE_*."""
    return_freed_memory_to_the_os()
    settings = Settings.from_env()
    if not logging.getLogger().handlers:
        logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    app = create_app(settings)
    app.state.freeze_gc = True  # a server process: its startup objects live as long as it does
    return app

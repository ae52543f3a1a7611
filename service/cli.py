"""Command line: `skimserve serve` (or `python -m service serve`) starts the HTTP server under uvicorn.

`skimserve eval|train|bench ARGS` pass ARGS to python -m training.evaluate / training.train /
benchmarks.backends (train needs the `train` extra; bench runs from a source checkout).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile

from .config import Settings

PASSTHROUGH = {
    "eval": ("training.evaluate", "evaluate a model on its test split and write its model card"),
    "train": ("training.train", "train a model (needs: pip install '.[train]')"),
    "bench": ("benchmarks.backends", "benchmark the layer backends (from a source checkout)"),
}


def serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="skimserve serve", description="Serve the models of a models dir over HTTP. Every flag "
        "overrides the SKIMSERVE_* environment variable of the same name (e.g. --max-queue: SKIMSERVE_MAX_QUEUE).")
    d = Settings()
    p.add_argument("--models-dir", help=f"folder of model folders (default {d.models_dir!r})")
    p.add_argument("--host", help=f"bind address (default {d.host}; 0.0.0.0 in a container)")
    p.add_argument("--port", type=int, help=f"default {d.port}")
    p.add_argument("--workers", type=int, help="uvicorn worker processes, each with every model loaded "
                   f"(default {d.workers}); >1 turns on Prometheus multiprocess mode")
    p.add_argument("--kernel", help=f"layer kernel: auto, reference, fast, onnx, torch-cuda, torch-cpu (default {d.kernel})")
    p.add_argument("--default-model", help="model used when a request names none (default: first name in sorted order)")
    p.add_argument("--max-text-bytes", type=int, help=f"per text, UTF-8 bytes (default {d.max_text_bytes})")
    p.add_argument("--max-tokens", type=int, help=f"per text (default {d.max_tokens})")
    p.add_argument("--max-batch", type=int, help=f"texts per request (default {d.max_batch})")
    p.add_argument("--pool-threads", type=int, help="model threads per worker (default 0 = one per core)")
    p.add_argument("--max-queue", type=int, help=f"waiting model jobs per worker before 503 (default {d.max_queue})")
    p.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"])
    return p


def setup_multiprocess_metrics(workers: int) -> None:
    """Several workers share metrics through files in PROMETHEUS_MULTIPROC_DIR (set before they start).
    Done here without importing service.metrics: its collectors open files in that directory at import."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if workers <= 1 and not path:
        return
    if not path:
        path = tempfile.mkdtemp(prefix="skimserve-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):  # samples of an earlier run would be merged in otherwise
        if name.endswith(".db"):
            os.unlink(os.path.join(path, name))


def serve(argv: list[str]) -> int:
    args = serve_parser().parse_args(argv)
    try:
        settings = Settings.from_env(**{k: v for k, v in vars(args).items()})
    except ValueError as exc:
        print(f"skimserve: {exc}", file=sys.stderr)
        return 2
    from .registry import Registry, RegistryError

    try:  # fail fast, with the artifact's own message, before any worker starts
        Registry(settings.models_dir, settings.kernel, settings.default_model).check()
    except RegistryError as exc:
        print(f"skimserve: {exc}", file=sys.stderr)
        return 2
    os.environ.update(settings.to_env())  # what every worker rebuilds its settings from
    setup_multiprocess_metrics(settings.workers)

    import uvicorn

    uvicorn.run("service.api.app:app_from_env", factory=True, host=settings.host, port=settings.port,
                workers=settings.workers, log_level=settings.log_level, timeout_graceful_shutdown=10)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    commands = ["serve", *PASSTHROUGH]
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print("usage: skimserve {serve,eval,train,bench} [ARGS]   (skimserve serve --help)\n\n"
              "  serve   serve the models of a models dir over HTTP\n"
              + "".join(f"  {c:<7} {doc}\n" for c, (_, doc) in PASSTHROUGH.items()),
              file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    if argv[0] == "serve":
        return serve(argv[1:])
    module, _ = PASSTHROUGH[argv[0]]
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        print(f"skimserve {argv[0]}: cannot import {module} ({exc})", file=sys.stderr)
        return 2
    rc = mod.main(argv[1:])
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Command line of the runtime: `skimserve serve` (or `python -m service serve`) starts the HTTP server
under uvicorn; `skimserve check` verifies a models dir (manifests, checksums, default model) and exits.

The flags are generated from the Settings declaration (service/config.py): one flag per setting, named
after it (--max-queue for max_queue), its description as the help text; each overrides the SKIMSERVE_*
variable of the same name. Training and benchmarks are not part of the runtime: from a source checkout
they run as `python -m training.<tool>` and `python -m benchmarks.<tool>`.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import typing

from .config import Settings, SettingsError, env_name, flag_name

# `skimserve check` needs only the settings that say what would be served and how.
CHECK_SETTINGS = ("models_dir", "kernel", "default_model")


def _metavar(annotation) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return "{" + ",".join(map(str, typing.get_args(annotation))) + "}"
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    return {int: "INT", float: "NUMBER", str: "TEXT", bool: "BOOL"}.get(args[0], "VALUE")


def add_settings_flags(parser: argparse.ArgumentParser, names: typing.Iterable[str] | None = None) -> None:
    """One flag per Settings field (all of them, or those named). Every flag defaults to None ("not
    given"), keeps the value as text and leaves parsing and validation to Settings, so a value means the
    same whether it comes from a flag or from the environment."""
    fields = Settings.model_fields
    for name in (names or fields):
        field = fields[name]
        default = "unset" if field.default is None else repr(field.default)
        parser.add_argument(flag_name(name), dest=name, metavar=_metavar(field.annotation), default=None,
                            help=f"{field.description} [default {default}; env {env_name(name)}]".replace("%", "%%"))


def serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="skimserve serve", description="Serve the models of a models dir over HTTP. Every flag "
        "overrides the SKIMSERVE_* environment variable of the same name (e.g. --max-queue: SKIMSERVE_MAX_QUEUE).")
    add_settings_flags(p)
    return p


def check_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="skimserve check", description="Verify a models dir without serving it: every model folder's "
        "manifest and SHA-256 checksums, and the default model. Exit status 0 if it would serve, 2 if not.")
    add_settings_flags(p, CHECK_SETTINGS)
    return p


def _settings(parser: argparse.ArgumentParser, argv: list[str]) -> Settings | None:
    args = parser.parse_args(argv)  # argparse itself exits 2 with a usage line on an unknown flag
    try:
        return Settings.from_env(**vars(args))
    except SettingsError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return None


def _check_models(settings: Settings, prog: str, deep: bool = False) -> bool:
    from .registry import Registry, RegistryError

    try:  # fail fast, with the artifact's own message, before any worker starts
        Registry(settings.models_dir, settings.kernel, settings.default_model).check(deep=deep)
    except RegistryError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return False
    return True


class MetricsDirError(RuntimeError):
    """PROMETHEUS_MULTIPROC_DIR cannot be used (not a directory, not writable)."""


def setup_multiprocess_metrics(workers: int) -> None:
    """Several workers share metrics through files in PROMETHEUS_MULTIPROC_DIR (set before they start).
    Done here without importing service.metrics: its collectors open files in that directory at import."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if workers <= 1 and not path:
        return
    if not path:
        path = tempfile.mkdtemp(prefix="skimserve-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    try:
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):  # samples of an earlier run would be merged in otherwise
            if name.endswith(".db"):
                os.unlink(os.path.join(path, name))
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".skimserve-probe-")  # the workers write here
        probe.close()
    except OSError as exc:
        raise MetricsDirError(f"PROMETHEUS_MULTIPROC_DIR={path!r} cannot hold the metrics files: "
                              f"{exc.strerror or exc}") from None


def serve(argv: list[str]) -> int:
    parser = serve_parser()
    settings = _settings(parser, argv)
    if settings is None or not _check_models(settings, parser.prog, deep=True):
        return 2
    os.environ.update(settings.to_env())  # what every worker rebuilds its settings from
    try:
        setup_multiprocess_metrics(settings.workers)
    except MetricsDirError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    return run_uvicorn(settings)


STARTUP_FAILURE = 3  # uvicorn's own exit status for a server (or worker) that never started


def run_uvicorn(settings: Settings) -> int:
    """uvicorn.run without its two gaps: with several workers a worker that fails at startup made the
    parent exit 0, and there was no header timeout (service/api/protocol.py). Non-zero whenever the
    server, or any worker, never started."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from .api.protocol import guarded_protocol

    config = uvicorn.Config("service.api.app:app_from_env", factory=True, host=settings.host, port=settings.port,
                            workers=settings.workers, log_level=settings.log_level, access_log=settings.access_log,
                            timeout_graceful_shutdown=10,
                            http=guarded_protocol(settings.http_parser))
    if settings.workers > 1:
        supervisor = Multiprocess(config, sockets=[config.bind_socket()])
        supervisor.run()
        failed = [p for p in supervisor.processes if p.exitcode == STARTUP_FAILURE]
        if failed:
            print(f"skimserve serve: worker {failed[0].pid} failed to start (its log above); stopped",
                  file=sys.stderr)
            return STARTUP_FAILURE
        return 0
    server = uvicorn.Server(config)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    except SystemExit as exc:  # uvicorn exits 3 itself when the app's startup fails
        if exc.code != STARTUP_FAILURE:
            raise
    if not server.started:
        print("skimserve serve: the server did not start (its log above)", file=sys.stderr)
        return STARTUP_FAILURE
    return 0


def check(argv: list[str]) -> int:
    parser = check_parser()
    settings = _settings(parser, argv)
    if settings is None or not _check_models(settings, parser.prog):
        return 2
    print(f"{parser.prog}: {settings.models_dir}: ok")
    return 0


COMMANDS = {
    "serve": (serve, "serve the models of a models dir over HTTP"),
    "check": (check, "verify a models dir (manifests, checksums, default model) without serving it"),
}
USAGE = ("usage: skimserve {serve,check} [ARGS]   (skimserve serve --help)\n\n"
         + "".join(f"  {name:<7} {doc}\n" for name, (_, doc) in COMMANDS.items())
         + "\nTraining and benchmarks run from a source checkout: python -m training.<tool>, "
           "python -m benchmarks.<tool>.\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0
    if not argv or argv[0] not in COMMANDS:
        if argv:
            print(f"skimserve: unknown command {argv[0]!r}", file=sys.stderr)
        print(USAGE, end="", file=sys.stderr)
        return 2
    command, _ = COMMANDS[argv[0]]
    try:
        return command(argv[1:])
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2, its message already printed)
        return exc.code if isinstance(exc.code, int) else 2


if __name__ == "__main__":
    sys.exit(main())

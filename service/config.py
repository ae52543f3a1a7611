"""Server settings: every SKIMSERVE_* environment variable is declared here, once, and nowhere else.

One pydantic-settings field per setting: its type and bounds validate the value, its description is
the --help text of the flag `skimserve serve` generates from it (service/cli.py), its name gives the
environment variable (SKIMSERVE_ + NAME) and the flag (--name-with-dashes).

- `Settings(...)` is a plain value: the defaults plus the arguments given; it reads no environment.
- `Settings.from_env(environ=None, **overrides)`: defaults <- SKIMSERVE_* environment <- overrides
  (the CLI's flags; None means "not given"). This is the one place that reads the environment.
- `settings.to_env()`: the SKIMSERVE_* variables that rebuild the same settings. The CLI writes them
  into the environment before starting uvicorn, so every worker process (uvicorn spawns them fresh)
  rebuilds the same Settings with `Settings.from_env()`.

A bad value raises SettingsError (a ValueError) whose message names the setting, where the value came
from (the variable or the flag) and what is expected, e.g.
`bad setting port='abc' (from SKIMSERVE_PORT): expected an integer`.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "SKIMSERVE_"

LogLevel = Literal["critical", "error", "warning", "info", "debug"]
OnnxOptLevel = Literal["disable", "basic", "extended", "all"]  # ONNX Runtime graph optimisation levels


class SettingsError(ValueError):
    """A setting with a bad value (or an unknown setting); the message says which, from where, and why."""

    def __init__(self, message: str, errors: list[dict] | None = None):
        super().__init__(message)
        self.errors = errors or []  # pydantic's error dicts


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def _kernel_names() -> list[str]:
    from .engine.backends import kernel_names  # the one list of backend names

    return kernel_names()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True,
                                      extra="forbid", validate_default=True)

    # --- where and what to serve ---
    models_dir: str = Field("models", description="folder of model folders (each with a manifest.json)")
    host: str = Field("127.0.0.1", description="bind address (0.0.0.0 in a container)")
    port: int = Field(8000, ge=1, description="TCP port")
    workers: int = Field(1, ge=1, description="uvicorn worker processes, each with every model loaded; "
                         ">1 turns on Prometheus multiprocess mode")
    kernel: str = Field("auto", description="layer kernel: " + ", ".join(_kernel_names()) + " (auto: the "
                        "benchmark-chosen backend per cell)")
    default_model: str | None = Field(None, description="model used when a request names none; unset: the "
                                      "first Skim-LSTM model by name (per task)")
    # --- request limits ---
    max_text_bytes: int = Field(100_000, ge=1, description="per text, UTF-8 bytes (413 above)")
    max_tokens: int = Field(5_000, ge=1, description="per text, after tokenization (413 above)")
    max_batch: int = Field(64, ge=1, description="texts per request (413 above)")
    max_answer_tokens: int = Field(15, ge=1, description="longest answer span, in tokens, that /qa decodes")
    # --- transport limits (hostile input and slow clients; docs/api.md, "Limits") ---
    max_body_bytes: int = Field(8_000_000, ge=1024, description="request body, bytes: a Content-Length over it "
                                "is 413 before any byte is read, a longer stream 413 while reading")
    max_inflight_body_bytes: int = Field(64_000_000, ge=1024, description="request body bytes buffered at once "
                                         "per worker, across requests (a declared body counts in full from admission); "
                                         "a body it cannot take is 503 + Retry-After before it is read (after "
                                         "waiting up to 2 s for room)")
    max_url_bytes: int = Field(8192, ge=256, description="path + query string, bytes (414 above)")
    max_header_bytes: int = Field(16384, ge=1024, description="request line + headers, bytes (431 above)")
    header_timeout: float = Field(10.0, gt=0, description="seconds a connection may take to send a request's "
                                  "line and headers (from its first byte or from the connection); then 408 and "
                                  "closed")
    body_timeout: float = Field(30.0, gt=0, description="seconds a request may take to send its whole body; "
                                "then 408 and closed")
    http_parser: Literal["auto", "httptools", "h11"] = Field("auto", description="uvicorn's HTTP parser, with "
                                                             "the guards of service/api/protocol.py; auto: "
                                                             "httptools when installed")
    # --- concurrency ---
    pool_threads: int = Field(0, ge=0, description="model threads per worker; 0 = one per CPU core")
    max_queue: int = Field(64, ge=0, description="model jobs allowed to wait per worker; beyond it: "
                           "503 + Retry-After")
    inline_max_bytes: int = Field(4096, ge=0, description="request bodies up to this size run on the event "
                                  "loop (a thread hop costs more than their model time); larger ones on the "
                                  "pool; 0 = always the pool (also what gpu_batch_size > 1 implies: batching needs "
                                  "concurrent requests on the pool's threads)")
    idle_poll_us: int | None = Field(None, ge=0, le=100_000, description="after an answer, the worker's event "
                                     "loop keeps polling for this many microseconds before it sleeps, so a "
                                     "client's next request finds it awake (service/api/idle_poll.py); never "
                                     "on a worker with as many workers as CPUs or with model jobs running; "
                                     "0 = off; unset: 50 where the guest kernel does not halt-poll (cpuidle "
                                     "haltpoll, guest_halt_poll_ns 0), else off")
    fast_path: bool = Field(True, description="answer valid /classify and /qa requests in plain ASGI "
                            "(service/api/fast_path.py); false: every request through the FastAPI routes")
    # --- latency objective (service/loadcontrol.py) ---
    latency_objective_ms: float = Field(0.0, ge=0.0, description="latency objective, ms; > 0: under load, lower "
                                        "the default threshold of requests that set none (along each model's "
                                        "calibrated curve) to keep p99 within it; 0 = off")
    min_threshold: float = Field(0.1, ge=0.0, le=1.0, description="the lowest threshold the latency objective "
                                 "may apply")
    # --- kernels ---
    onnx_threads: int = Field(1, ge=1, description="ONNX Runtime intra-op threads per session (1: the "
                              "server parallelises across requests)")
    onnx_opt_level: OnnxOptLevel = Field("all", description="ONNX Runtime graph optimisation level")
    torch_device: str = Field("cuda", description="torch device of the torch-cuda kernel (e.g. cuda:1)")
    gpu_batch_size: int = Field(1, ge=1, le=1024, description="torch kernels: concurrent requests' calls of a layer "
                                "batched up to this many texts (1: no batching; docs/gpu.md)")
    gpu_batch_wait_ms: float = Field(0.0, ge=0, le=100, description="torch kernels: how long a batch that is not "
                                     "full waits for more (0: only what queued while the device was busy)")
    # --- logging ---
    log_level: LogLevel = Field("info", description="uvicorn and skimserve log level")
    access_log: bool = Field(False, description="uvicorn's line per request (off: it costs tens of "
                             "microseconds a request; the request metrics count every request)")

    @field_validator("kernel")
    @classmethod
    def _known_kernel(cls, value: str) -> str:
        if value not in _kernel_names():
            raise ValueError(f"expected one of {', '.join(_kernel_names())}")
        return value

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _settings_error(exc.errors(include_url=False), values) from None

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings) -> tuple[PydanticBaseSettingsSource, ...]:
        # Settings(...) takes its arguments only; the environment is read by from_env alone.
        return (init_settings,)

    @property
    def threads(self) -> int:
        return self.pool_threads or (os.cpu_count() or 1)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Defaults <- SKIMSERVE_* environment <- overrides (CLI flags; None means 'not given')."""
        from_environ = _EnvSource(cls, os.environ if environ is None else environ)()
        given = {k: v for k, v in overrides.items() if v is not None}
        values = {**from_environ, **given}

        def origin(name: str) -> str | None:
            if name in given:
                return flag_name(name) if name in cls.model_fields else None
            return env_name(name) if name in from_environ else None

        try:
            return cls(**values)
        except SettingsError as exc:  # say where each bad value came from
            raise _settings_error(exc.errors, values, origin) from None

    def to_env(self) -> dict[str, str]:
        """The SKIMSERVE_* variables that reproduce these settings (for worker processes)."""
        return {env_name(name): str(value) for name, value in self.model_dump().items() if value is not None}

    def with_(self, **changes: Any) -> "Settings":
        """A copy with some settings changed (validated like any other)."""
        return type(self)(**{**self.model_dump(), **changes})


class _EnvSource(PydanticBaseSettingsSource):
    """The SKIMSERVE_<NAME> variable of each setting in a given mapping (os.environ by default); empty
    values count as not set. Every setting is a scalar, so the raw string goes to pydantic as it is."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]):
        super().__init__(settings_cls)
        self.environ = environ

    def get_field_value(self, field, field_name: str) -> tuple[Any, str, bool]:
        return self.environ.get(env_name(field_name)) or None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                found[key] = value
        return found


_EXPECTED = {  # pydantic error type -> what the message says is expected
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "int_type": "expected an integer",
    "string_type": "expected a string",
    "extra_forbidden": "no such setting",
}


def _settings_error(errors: list[dict], values: Mapping[str, Any],
                    origin: Callable[[str], str | None] = lambda name: None) -> SettingsError:
    problems = []
    for err in errors:
        name = str(err["loc"][0]) if err["loc"] else "?"
        where = origin(name)
        what = f"{name}={values[name]!r}" if name in values else name
        why = _EXPECTED.get(err["type"])
        if why is None:
            ctx = err.get("ctx") or {}
            if err["type"] == "greater_than_equal":
                why = f"must be >= {ctx.get('ge')}"
            elif err["type"] == "greater_than":
                why = f"must be > {ctx.get('gt')}"
            elif err["type"] == "literal_error":
                why = f"expected one of {ctx.get('expected')}"
            else:
                why = err["msg"][0].lower() + err["msg"][1:]
        problems.append(f"{what}{f' (from {where})' if where else ''}: {why}")
    return SettingsError("bad setting " + "; ".join(problems), errors)

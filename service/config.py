"""Server settings: one place that reads the environment (SKIMSERVE_*); CLI flags override it.

The CLI writes its flags back into the environment before starting uvicorn, so every worker process
(uvicorn spawns them fresh) rebuilds the same Settings from the environment alone.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

ENV_PREFIX = "SKIMSERVE_"


@dataclass(frozen=True)
class Settings:
    models_dir: str = "models"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1                 # uvicorn worker processes (each loads every model)
    kernel: str = "auto"             # layer kernel: auto, reference, fast, onnx, torch-cuda, torch-cpu
    default_model: str | None = None  # served when a request names no model; None: first name in sorted order
    max_text_bytes: int = 100_000    # per text, UTF-8 bytes (413 above)
    max_tokens: int = 5_000          # per text, after tokenization (413 above)
    max_batch: int = 64              # texts per request (413 above)
    pool_threads: int = 0            # model threads per worker; 0 = one per CPU core
    max_queue: int = 64              # requests waiting for a model thread; beyond it: 503 + Retry-After
    log_level: str = "info"

    def __post_init__(self):
        for name in ("port", "workers", "max_text_bytes", "max_tokens", "max_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.pool_threads < 0 or self.max_queue < 0:
            raise ValueError("pool_threads and max_queue must be >= 0")

    @property
    def threads(self) -> int:
        return self.pool_threads or (os.cpu_count() or 1)

    @property
    def max_body_bytes(self) -> int:
        # Whole request body cap, checked before JSON parsing: a full batch of maximal texts, escaped
        # (JSON can spend up to 6 bytes per character with \\uXXXX), plus room for the envelope.
        return 6 * self.max_text_bytes * self.max_batch + 4096

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> "Settings":
        """Defaults <- SKIMSERVE_* environment <- overrides (CLI flags; None means 'not given')."""
        env = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.name, raw, f.type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The SKIMSERVE_* variables that reproduce these settings (for worker processes)."""
        return {ENV_PREFIX + f.name.upper(): str(getattr(self, f.name)) for f in fields(self)
                if getattr(self, f.name) is not None}

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)


def _parse(name: str, raw: str, typ) -> object:
    if "int" in str(typ):
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r}: expected an integer") from None
    return raw

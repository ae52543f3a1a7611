"""Model registry: find model folders, verify and load them, warm them up, look them up by name.

A model folder is any subfolder of the models dir holding a manifest.json (Triton-style: what is served
can be read off the disk). Loading goes through service.artifacts (checksums, shapes, no pickle) and
service.families.build_model; any bad artifact stops the startup with a RegistryError naming the
folder and the file, instead of serving a half-working set of models.
"""
from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from .artifacts import MANIFEST, ArtifactError, load_artifact, read_manifest, verify_checksums
from .families import build_model
from .families.base import ServedModel
from .tasks import get_task

log = logging.getLogger(__name__)

CARD_JSON, CARD_MD = "card.json", "card.md"


class RegistryError(RuntimeError):
    """The models dir cannot be served as configured (missing, empty, bad artifact, unknown default)."""


class UnknownModel(KeyError):
    def __init__(self, name: str, known: list[str]):
        super().__init__(name)
        self.name, self.known = name, known

    def __str__(self) -> str:
        return f"unknown model '{self.name}' (served: {', '.join(self.known) or 'none'})"


# A filesystem path: absolute, home-relative or relative to a dot folder (/tmp/runs/x, ~/x, ../shared/data,
# .carry/vocab); the repository-relative names manifests also hold (service/tokenizer.py) are kept.
_PATH = re.compile(r"(?<![\w.:/~-])(?:~|\.{1,2}|\.[\w-]+)?/[^\s\"',;:)\]}|]+")


def redact_paths(value):
    """A copy of a JSON-like value with every filesystem path in its strings replaced by '<path>'."""
    if isinstance(value, str):
        return _PATH.sub("<path>", value)
    if isinstance(value, dict):
        return {k: redact_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_paths(v) for v in value]
    return value


@dataclass
class ModelEntry:
    model: ServedModel
    folder: Path
    card: dict | None = None          # card.json, written by `python -m training.evaluate`
    card_markdown: str | None = None  # card.md
    load_seconds: float = 0.0
    warmup_seconds: float = 0.0

    @property
    def name(self) -> str:
        return self.model.name

    def summary(self) -> dict:
        return {**self.model.describe(), "has_card": self.card is not None}

    def detail(self) -> dict:
        """What GET /models/{name} shows: paths of the machine the model was built on are redacted."""
        return {**self.summary(), "manifest": redact_paths(self.model.manifest), "card": redact_paths(self.card),
                "card_markdown": redact_paths(self.card_markdown)}


@dataclass
class Registry:
    models_dir: Path
    kernel: str = "auto"
    default_name: str | None = None
    entries: dict[str, ModelEntry] = field(default_factory=dict)
    ready: bool = False

    # --- startup -----------------------------------------------------------------
    def load_all(self, warmup: bool = True) -> "Registry":
        folders = self.discover()
        for folder in folders:
            entry = self._load(folder)
            if entry.name in self.entries:
                raise RegistryError(f"{folder}: model name '{entry.name}' is also used by "
                                    f"{self.entries[entry.name].folder}")
            self.entries[entry.name] = entry
        if self.default_name is None:
            self.default_name = self.pick_default(list(self.entries.values()))
        self._check_default(self.entries)
        if warmup:
            for entry in self.entries.values():
                self._warm(entry)
        self.ready = True
        return self

    def check(self, deep: bool = False) -> None:
        """Cheap pre-flight (manifests and checksums; deep: also every weight read and shape-checked, as
        a worker will), so the CLI can refuse a bad models dir with a one-line message before starting
        any worker."""
        names = []
        for folder in self.discover():
            try:
                manifest = read_manifest(folder)
                verify_checksums(folder, manifest)
                if deep:
                    load_artifact(folder)
            except ArtifactError as exc:
                raise RegistryError(f"cannot serve model folder {folder}: {exc}") from exc
            except Exception as exc:  # noqa: BLE001  corrupt bytes that pass the checksum
                raise RegistryError(f"cannot serve model folder {folder}: {type(exc).__name__}: {exc}") from exc
            names.append(manifest["name"])
        self._check_default(names)

    @staticmethod
    def pick_default(entries: list[ModelEntry], task: str | None = None) -> str | None:
        """With no --default-model: the first Skim-LSTM model by name, so the threshold dial does something;
        else the first model that skims in another way (e.g. skip-lstm); else the first by name. Per task when
        asked for one."""
        pool = sorted((e for e in entries if task is None or e.model.task == task), key=lambda e: e.name)
        chosen = ([e for e in pool if e.model.cell == "skim-lstm"] or [e for e in pool if e.model.stack.skims]
                  or pool)
        return chosen[0].name if chosen else None

    def _check_default(self, names) -> None:
        if self.default_name is not None and self.default_name not in names:
            raise RegistryError(f"default model '{self.default_name}' is not in {self.models_dir} "
                                f"(found: {', '.join(sorted(names))})")

    def discover(self) -> list[Path]:
        root = Path(self.models_dir)
        if not root.is_dir():
            raise RegistryError(f"models dir '{root}' does not exist (set --models-dir or SKIMSERVE_MODELS_DIR)")
        folders = sorted(p for p in root.iterdir() if p.is_dir() and (p / MANIFEST).is_file())
        if not folders:
            raise RegistryError(f"models dir '{root}' holds no model folder (a subfolder with {MANIFEST})")
        return folders

    def _load(self, folder: Path) -> ModelEntry:
        t0 = time.perf_counter()
        try:
            artifact = load_artifact(folder)
            model = build_model(artifact, self.kernel)
        except ArtifactError as exc:
            raise RegistryError(f"cannot serve model folder {folder}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001  bytes that pass the checksum can still be corrupt
            # (a re-checksummed flipped byte, a truncated zip, wrong dtypes): one line, never a traceback
            raise RegistryError(f"cannot build model from {folder}: {type(exc).__name__}: {exc}") from exc
        card = card_md = None
        if (folder / CARD_JSON).is_file():
            try:
                card = json.loads((folder / CARD_JSON).read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise RegistryError(f"{folder / CARD_JSON}: not valid JSON ({exc})") from exc
        if (folder / CARD_MD).is_file():
            card_md = (folder / CARD_MD).read_text(encoding="utf-8")
        entry = ModelEntry(model, folder, card, card_md, load_seconds=time.perf_counter() - t0)
        log.info("loaded %s (version %s, family %s, kernel %s) from %s in %.2fs", model.name, model.version,
                 model.cell, model.kernel_name, folder, entry.load_seconds)
        return entry

    @staticmethod
    def _warm(entry: ModelEntry) -> None:
        """First calls pay for lazy setup (ONNX Runtime allocations, caches): pay it before readiness."""
        t0 = time.perf_counter()
        get_task(entry.model.task).warm(entry.model)
        entry.warmup_seconds = time.perf_counter() - t0

    # --- lookup ------------------------------------------------------------------
    def names(self, task: str | None = None) -> list[str]:
        return sorted(n for n, e in self.entries.items() if task is None or e.model.task == task)

    def default_for(self, task: str | None) -> str | None:
        """The server's default model when it answers `task`, else that task's own default."""
        default = self.entries.get(self.default_name) if self.default_name else None
        if task is None or (default is not None and default.model.task == task):
            return self.default_name
        return self.pick_default(list(self.entries.values()), task)

    def get(self, name: str | None, task: str | None = None) -> ModelEntry:
        key = self.default_for(task) if name is None else name
        if key not in self.entries:
            raise UnknownModel(str(key), self.names())
        return self.entries[key]

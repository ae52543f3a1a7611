"""Model artifacts on disk: a folder per model with manifest.json, weights.npz, vocab.txt, card.

Loading never unpickles (np.load(allow_pickle=False)); every file listed in the manifest is
checked against its SHA-256, and every weight against the shape the manifest declares, so a
tampered or truncated artifact fails loudly at load, never at request time.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .manifest import FORMAT_VERSION, Manifest

MANIFEST = "manifest.json"
WEIGHTS = "weights.npz"
VOCAB = "vocab.txt"


class ArtifactError(RuntimeError):
    """An artifact is missing, tampered with, or inconsistent with its manifest."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Artifact:
    path: Path
    manifest: dict
    weights: dict[str, np.ndarray]
    vocab: list[str]
    spec: Manifest | None = None      # the typed manifest
    base_path: Path | None = None     # the folder whose weights were merged in (manifest 'base')

    @property
    def name(self) -> str:
        return self.manifest["name"]


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{folder}: no {MANIFEST}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from exc
    for key in ("name", "task", "family", "format_version", "files", "weights"):
        if key not in manifest:
            raise ArtifactError(f"{path}: manifest lacks '{key}'")
    if manifest["format_version"] != FORMAT_VERSION:
        raise ArtifactError(f"{path}: format_version {manifest['format_version']} unsupported (want {FORMAT_VERSION})")
    try:
        Manifest.parse(manifest, str(path))
    except ValueError as exc:
        raise ArtifactError(str(exc)) from None
    return manifest


def verify_checksums(folder: Path, manifest: dict) -> None:
    for fname, expected in manifest["files"].items():
        fpath = Path(folder) / fname
        if not fpath.is_file():
            raise ArtifactError(f"{folder}: file '{fname}' listed in the manifest is missing")
        actual = sha256_file(fpath)
        if actual != expected:
            raise ArtifactError(
                f"{folder}: checksum mismatch for '{fname}' (manifest {expected[:12]}..., file {actual[:12]}...): "
                "the artifact was modified or corrupted; refusing to load it"
            )


def load_weights(folder: Path, manifest: dict) -> dict[str, np.ndarray]:
    declared = manifest["weights"]
    try:
        with np.load(Path(folder) / WEIGHTS, allow_pickle=False) as npz:
            weights = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{folder}: cannot read {WEIGHTS} without pickle ({exc})") from exc
    if set(weights) != set(declared):
        raise ArtifactError(f"{folder}: weights {sorted(weights)} differ from manifest {sorted(declared)}")
    out = {}
    for key, arr in weights.items():
        if list(arr.shape) != list(declared[key]):
            raise ArtifactError(f"{folder}: weight '{key}' has shape {arr.shape}, manifest says {declared[key]}")
        if not np.all(np.isfinite(arr)):
            raise ArtifactError(f"{folder}: weight '{key}' holds NaN or inf")
        # The runtime computes in float32; the embedding may be stored as float16 to halve the size.
        out[key] = np.ascontiguousarray(arr, dtype=np.float32)
    return out


def read_vocab(folder: Path, n_vocab: int) -> list[str]:
    vocab = (Path(folder) / VOCAB).read_text(encoding="utf-8").split("\n")
    if vocab and vocab[-1] == "":
        vocab.pop()
    if len(vocab) != n_vocab:
        raise ArtifactError(f"{folder}: vocab.txt has {len(vocab)} entries, manifest says {n_vocab}")
    return vocab


def find_base(folder: Path, name: str) -> Path:
    """The model folder named `name` beside `folder` (same models dir)."""
    for candidate in sorted(Path(folder).parent.iterdir()):
        if (candidate / MANIFEST).is_file():
            try:
                if json.loads((candidate / MANIFEST).read_text(encoding="utf-8")).get("name") == name:
                    return candidate
            except (ValueError, OSError):
                continue
    raise ArtifactError(f"{folder}: its base model '{name}' is not in {Path(folder).parent}")


def load_base(folder: Path, spec: Manifest) -> tuple[Path, dict[str, np.ndarray]]:
    """The base artifact's weights, after checking its files have the checksums this manifest names."""
    base_dir = find_base(folder, spec.base.name)
    base = load_artifact(base_dir)
    for fname, expected in spec.base.files.items():
        actual = base.manifest["files"].get(fname)
        if actual != expected or sha256_file(base_dir / fname) != expected:
            raise ArtifactError(f"{folder}: base '{spec.base.name}' file '{fname}' has checksum "
                                f"{(actual or 'none')[:12]}..., this model was built on {expected[:12]}...; refusing to load")
    return base_dir, base.weights


def merge_base(base: dict[str, np.ndarray], own: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Own weights win, also over a base tensor they store in another form: an AntMan student's
    "rnn.W_ih.blocks" replaces its dense base's "rnn.W_ih" (else both would reach the layer), and an own
    dense "K" replaces a base's "K.*"."""
    def shadowed(k: str) -> bool:
        return k in own or any(o.startswith(k + ".") or k.startswith(o + ".") for o in own)

    return {**{k: v for k, v in base.items() if not shadowed(k)}, **own}


def load_artifact(folder: Path | str) -> Artifact:
    folder = Path(folder)
    manifest = read_manifest(folder)
    verify_checksums(folder, manifest)
    spec = Manifest.parse(manifest, str(folder / MANIFEST))
    weights = load_weights(folder, manifest)
    base_path = None
    if spec.base is not None:  # weights it does not hold come from the base model (by checksum)
        base_path, base_weights = load_base(folder, spec)
        weights = merge_base(base_weights, weights)
    vocab = read_vocab(folder, spec.sizes.get("vocab", -1))
    return Artifact(folder, manifest, weights, vocab, spec, base_path)


def write_artifact(folder: Path | str, manifest: dict, weights: dict[str, np.ndarray], vocab: list[str],
                   extra_files: tuple[str, ...] = ()) -> dict:
    """Write weights + vocab, then the manifest with their checksums and shapes (training/export side)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / WEIGHTS, **weights)
    (folder / VOCAB).write_text("\n".join(vocab) + "\n", encoding="utf-8")
    manifest = dict(manifest)
    manifest["format_version"] = FORMAT_VERSION
    manifest["weights"] = {k: list(v.shape) for k, v in weights.items()}
    manifest["weight_dtypes"] = {k: str(v.dtype) for k, v in weights.items()}
    manifest["sizes"] = {**manifest.get("sizes", {}), "vocab": len(vocab)}
    files = [WEIGHTS, VOCAB, *extra_files]
    manifest["files"] = {f: sha256_file(folder / f) for f in files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def refresh_checksums(folder: Path | str) -> dict:
    """Recompute file checksums after adding a file (e.g. model.onnx) to an existing artifact."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    manifest["files"] = {f: sha256_file(folder / f) for f in manifest["files"]}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest

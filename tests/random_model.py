"""Random-weight artifacts in the real format: for tests and benchmarks that need no trained model.

A test fixture, not part of the runtime package: tests import it as `random_model` (tests/ is on their
path, like conftest), benchmarks from a source checkout as `tests.random_model`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from service.artifacts import write_artifact

DEFAULT_WORDS = ("the a an and of to is it this that film movie good bad great awful not very was "
                 "but with for as on at by from plot acting story boring funny . , ! ? ' n't 's").split()


def random_layer_weights(rng: np.random.Generator, e: int, d: int, d_small: int, prefix: str = "rnn.",
                         scale: float = 0.3, skim_bias: float = 0.0,
                         compression: dict | None = None) -> dict[str, np.ndarray]:
    """compression (manifest form, {"W_ih": {...}, "W_hh": {...}}): the big cell's products as AntMan modules."""
    r = lambda *s: (rng.standard_normal(s) * scale / np.sqrt(s[-1]) * 3).astype(np.float32)  # noqa: E731
    w = {prefix + "W_ih": r(4 * d, e), prefix + "W_hh": r(4 * d, d), prefix + "b": r(4 * d)}
    if compression:
        from service.cells.antman_modules import random_tensors

        for product, n in (("W_ih", e), ("W_hh", d)):
            del w[prefix + product]
            w.update(random_tensors(compression[product], 4 * d, n, rng, prefix + product, scale=3 * scale))
    if d_small:
        w.update({prefix + "Ws_ih": r(4 * d_small, e), prefix + "Ws_hh": r(4 * d_small, d),
                  prefix + "bs": r(4 * d_small), prefix + "Wd": r(2, e + d),
                  prefix + "bd": np.array([0.0, skim_bias], np.float32)})
    return w


def make_random_classifier(folder: str | Path, e: int = 16, d: int = 24, d_small: int = 4, seed: int = 0,
                           words: tuple[str, ...] = DEFAULT_WORDS, name: str | None = None,
                           training: dict | None = None, compression: dict | None = None) -> dict:
    """d_small=0 gives a plain LSTM ('lstm' family); otherwise a Skim-LSTM. training: extra manifest
    training fields (e.g. dataset, dev_accuracy) for tests of the training-side commands. compression
    (manifest form): an AntMan model ('antman-lstm' / 'antman-skim-lstm') with those modules."""
    rng = np.random.default_rng(seed)
    vocab = ["<pad>", "<unk>", *words]
    weights = {"embedding": rng.standard_normal((len(vocab), e)).astype(np.float32)}
    weights.update(random_layer_weights(rng, e, d, d_small, compression=compression))
    weights["head.W"] = rng.standard_normal((2, d)).astype(np.float32)
    weights["head.b"] = np.zeros(2, np.float32)
    from service.manifest import new_manifest

    cell = "skim-lstm" if d_small else "lstm"
    extra = {}
    if compression:
        cell, extra = "antman-" + cell, {"compression": compression, "teacher": "random-dense-teacher"}
    manifest = new_manifest(name or Path(folder).name, "classify", cell,
                            sizes={"embed": e, "hidden": d, "small_hidden": d_small}, labels=["negative", "positive"],
                            version="0-random", tokenizer={"name": "skimserve-ptb-lower-v1"},
                            training={"command": f"random weights, seed {seed}", "data": None, **(training or {})},
                            **extra)
    return write_artifact(folder, manifest, weights, vocab)


def make_random_reader(folder: str | Path, e: int = 8, d: int = 10, d_small: int = 3, seed: int = 0,
                       words: tuple[str, ...] = DEFAULT_WORDS, name: str | None = None) -> dict:
    """A QA reader (task 'qa'): attention + two bidirectional layers (l0.fw, l0.bw, l1.fw, l1.bw) + span heads,
    in the layout of the shipped squad models. d_small=0: plain LSTM layers."""
    from service.manifest import new_manifest

    rng = np.random.default_rng(seed)
    vocab = ["<pad>", "<unk>", *words, "café", "naïve", "über"]
    weights = {"embedding": rng.standard_normal((len(vocab), e)).astype(np.float32),
               "att.w": (rng.standard_normal(3 * e) * 0.5).astype(np.float32)}
    layers = []
    for depth, e_in in ((0, 3 * e), (1, 2 * d)):
        for direction, short in (("forward", "fw"), ("backward", "bw")):
            layers.append({"name": f"l{depth}.{short}", "direction": direction})
            weights.update(random_layer_weights(rng, e_in, d, d_small, prefix=f"l{depth}.{short}."))
    for head in ("start", "end"):
        weights[f"{head}.w"] = rng.standard_normal(2 * d).astype(np.float32)
        weights[f"{head}.b"] = np.zeros(1, np.float32)
    manifest = new_manifest(name or Path(folder).name, "qa", "skim-lstm" if d_small else "lstm",
                            sizes={"embed": e, "hidden": d, "small_hidden": d_small, "layers": 2, "directions": 2},
                            layers=layers, default_threshold=0.5, version="0-random", max_answer_tokens=5,
                            training={"command": f"random weights, seed {seed}"})
    return write_artifact(folder, manifest, weights, vocab)

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from random_model import make_random_classifier

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = ROOT / "models"
if str(ROOT) not in sys.path:  # benchmarks/ is read from the checkout
    sys.path.insert(0, str(ROOT))
from benchmarks.request_path import MemoryTransport  # noqa: E402,F401  (the tests' in-memory transport too)


@pytest.fixture(scope="session")
def random_models_dir(tmp_path_factory) -> Path:
    """A models dir with a tiny random Skim-LSTM and a tiny random LSTM, in the real artifact format."""
    root = tmp_path_factory.mktemp("models")
    make_random_classifier(root / "tiny-skim", d_small=4, seed=1)
    make_random_classifier(root / "tiny-lstm", d_small=0, seed=2)
    return root


def require_dataset(dataset: str, split: str = "test", n: int = 1):
    """The first n examples of a split, or skip the test when the shared data is absent."""
    from training import data

    try:
        return data.load(dataset, split, limit=n)
    except FileNotFoundError:
        pytest.skip(f"dataset {dataset} not found under {data.data_dir()}")


def real_sentences(dataset: str, n: int) -> list[str]:
    """First n test-split texts, or skip when the shared data is absent."""
    return [ex.text for ex in require_dataset(dataset, "test", n)]


def tiny_sst2_run(out_dir) -> list[str]:
    """train.py arguments for a seconds-long CPU run on 200 SST-2 examples (training smoke tests); add the
    family, name and step count."""
    return ["--dataset", "sst2", "--out-dir", str(out_dir), "--limit", "200", "--eval-every", "5",
            "--batch-size", "16", "--device", "cpu", "--d", "16"]


def assert_same_layer_output(ref, out, where: str = "", tol: float = 1e-5) -> None:
    """A fast kernel's LayerOutput against the reference's: dtypes, identical decisions, values within tol."""
    assert out.hs.dtype == np.float32 and out.hs.shape == ref.hs.shape, where
    assert out.skim.dtype == np.bool_ and out.p_skim.dtype == np.float32, where
    assert np.array_equal(out.skim, ref.skim), f"decisions differ {where}"
    if len(ref.hs):
        assert np.abs(out.hs - ref.hs).max() <= tol, where
        assert np.abs(out.p_skim - ref.p_skim).max() <= tol, where


TIMINGS = {"latency_ms", "per_token_us"}  # the fields of an answer that differ from run to run


def without_timings(value):
    """An answer's JSON without its timings, to compare two paths' answers field for field."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value

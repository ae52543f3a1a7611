"""The six shipped classifiers answer exactly as they did before the task/cell split: the same labels,
skim decisions and FLOPs on the test splits (SST-2 and MR whole, IMDb's first 2,000 reviews) at
thresholds 0.5, 0.3 and 1.0, logits within 1e-5. tests/golden/*.npz were written by
tests/golden/record.py from commit 90c1cb6 (the last commit before the split)."""
from pathlib import Path

import numpy as np
import pytest

from conftest import MODELS_DIR, require_dataset

GOLDEN = Path(__file__).parent / "golden"
record = pytest.importorskip("golden.record", reason="tests/golden/record.py")


@pytest.mark.parametrize("name", record.MODELS)
def test_shipped_model_answers_as_before_the_split(name):
    from service.artifacts import load_artifact
    from service.families import build_model

    dataset = name.split("-")[0]
    require_dataset(dataset, "test", 1)
    model = build_model(load_artifact(MODELS_DIR / name), kernel="fast")
    now = record.record(model, record.texts_of(dataset))
    before = dict(np.load(GOLDEN / f"{name}.npz", allow_pickle=False))
    assert set(now) == set(before)
    for key in before:
        if key.endswith(".logits"):
            np.testing.assert_allclose(now[key], before[key], atol=1e-5, err_msg=key)
            assert (now[key].argmax(1) == before[key].argmax(1)).all(), key
        else:
            np.testing.assert_array_equal(now[key], before[key], err_msg=key)

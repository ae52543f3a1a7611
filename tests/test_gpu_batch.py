"""The dynamic batcher (service/engine/gpu_batch.py): concurrent calls batched, each keeping its own result."""
import threading

import numpy as np
import pytest

from service.engine import reference
from service.engine.gpu_batch import LayerBatcher
from service.engine.layer import LayerWeights
from random_model import random_layer_weights

torch = pytest.importorskip("torch", reason="torch not installed")
from service.engine import gpu  # noqa: E402


def test_concurrent_calls_batch_with_their_own_thresholds():
    w = LayerWeights.from_dict(random_layer_weights(np.random.default_rng(3), 16, 24, 4), "rnn.")
    sizes = []

    def run_many(w_, xs, thr, budgets):
        sizes.append(len(xs))
        assert budgets == [None] * len(xs)
        return gpu.run_layers_on(w_, xs, thr, "cpu", None, budgets)

    b = LayerBatcher(run_many, max_batch=8, wait_ms=200)
    xs = [np.random.default_rng(i).standard_normal((5 + 7 * i, 16)).astype(np.float32) for i in range(8)]
    thr = [0.1, 0.3, 0.5, 0.7, 0.9, 0.2, 0.4, 1.0]
    outs = [None] * 8
    threads = [threading.Thread(target=lambda i=i: outs.__setitem__(i, b.run(w, xs[i], thr[i]))) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert max(sizes) > 1 and sum(sizes) == 8, sizes
    for x, t, out in zip(xs, thr, outs):
        ref = reference.run_layer(w, x, t)
        np.testing.assert_array_equal(out.skim, ref.skim)
        np.testing.assert_allclose(out.hs, ref.hs, atol=1e-4)


def test_errors_reach_every_waiting_call():
    def boom(w, xs, thr, budgets):
        raise RuntimeError("device lost")

    b = LayerBatcher(boom, max_batch=4, wait_ms=0)
    with pytest.raises(RuntimeError, match="device lost"):
        b.run(object(), np.zeros((2, 3), np.float32), 0.5)


def test_bad_settings_refused():
    with pytest.raises(ValueError):
        LayerBatcher(lambda *a: [], max_batch=0, wait_ms=0)

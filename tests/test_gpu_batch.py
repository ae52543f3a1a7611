"""The dynamic batcher (service/engine/gpu_batch.py): concurrent calls batched, each keeping its own result."""
import threading
import time

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


def test_calls_of_different_layers_queued_together():
    """Calls of two layers of different sizes (a QA model's encoders) waiting in one queue: each batch takes
    its own layer's calls and leaves the others queued. Taking them out once compared the queued items
    with ==, which compares weight arrays: the batcher thread died and every later request hung."""
    w1 = LayerWeights.from_dict(random_layer_weights(np.random.default_rng(3), 16, 24, 4), "rnn.")
    w2 = LayerWeights.from_dict(random_layer_weights(np.random.default_rng(4), 16, 30, 5), "rnn.")
    gate, calls = threading.Event(), []

    def run_many(w_, xs, thr, budgets):
        gate.wait(10)  # the first batch holds the device while the rest queue up, interleaved
        calls.append((w_, len(xs)))
        return gpu.run_layers_on(w_, xs, thr, "cpu", None, budgets)

    b = LayerBatcher(run_many, max_batch=8, wait_ms=0)
    layers = [w1, w1, w2, w1, w2, w1]
    xs = [np.random.default_rng(10 + i).standard_normal((6 + i, 16)).astype(np.float32) for i in range(6)]
    outs = [None] * 6
    threads = []
    for i in range(6):
        threads.append(threading.Thread(target=lambda i=i: outs.__setitem__(i, b.run(layers[i], xs[i], 0.5))))
        threads[-1].start()
        time.sleep(0.05)
    gate.set()
    for t in threads:
        t.join(30)
    assert all(o is not None for o in outs), "a call never got its answer"
    for w, x, out in zip(layers, xs, outs):
        np.testing.assert_array_equal(out.skim, reference.run_layer(w, x, 0.5).skim)
    assert sum(n for _, n in calls) == 6 and all(n >= 1 for _, n in calls)


def test_a_wrong_result_count_fails_the_batch_instead_of_hanging():
    b = LayerBatcher(lambda w, xs, thr, budgets: [], max_batch=4, wait_ms=0)
    with pytest.raises(RuntimeError, match="gave 0 results"):
        b.run(object(), np.zeros((2, 3), np.float32), 0.5)


def test_errors_reach_every_waiting_call():
    def boom(w, xs, thr, budgets):
        raise RuntimeError("device lost")

    b = LayerBatcher(boom, max_batch=4, wait_ms=0)
    with pytest.raises(RuntimeError, match="device lost"):
        b.run(object(), np.zeros((2, 3), np.float32), 0.5)


def test_bad_settings_refused():
    with pytest.raises(ValueError):
        LayerBatcher(lambda *a: [], max_batch=0, wait_ms=0)

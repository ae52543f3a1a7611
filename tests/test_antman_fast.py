"""The compiled AntMan kernel (service/engine/_antmankernel.c via fast_antman.py) against the NumPy reference
of the cells on the same weights and inputs: identical skim decisions, hidden states and p_skim within
2e-6 (float32 sums in another order), on the AVX2 and the scalar path, every module, sizes that are not
multiples of 8. Skipped when the extension is not built."""
import numpy as np
import pytest
from fastapi.testclient import TestClient

from conftest import assert_same_layer_output
from random_model import make_random_classifier, random_layer_weights
from service.cells import get_cell

_k = pytest.importorskip("service.engine._antmankernel", reason="the AntMan kernel is not built (setup.py)")
from service.engine import fast_antman  # noqa: E402
from service.engine.backends import get_backend  # noqa: E402

TOL = 2e-6
CASES = [  # (e, d, d_small, compression)
    (20, 40, 8, {"W_ih": {"module": "lgp-shuffle", "groups": 4}, "W_hh": {"module": "lgp-shuffle", "groups": 10}}),
    (20, 40, 8, {"W_ih": {"module": "lgp-dense", "groups": 2},
                 "W_hh": {"module": "lowrank-lgp", "groups_in": 2, "groups_out": 4, "rank": 2}}),
    (20, 40, 5, {"W_ih": {"module": "dense"}, "W_hh": {"module": "lgp-dense", "groups": 5}}),
    (20, 40, 8, {"W_ih": {"module": "lowrank-lgp", "groups_in": 5, "groups_out": 10, "rank": 2},
                 "W_hh": {"module": "lowrank-lgp", "groups_in": 10, "groups_out": 10, "rank": 2}}),
    # rows of 3, 5, 1 per block (not multiples of 8), m < n for lgp-dense (mix after), rank 5
    (30, 10, 3, {"W_ih": {"module": "lgp-dense", "groups": 5}, "W_hh": {"module": "lgp-shuffle", "groups": 5}}),
    (15, 10, 2, {"W_ih": {"module": "lowrank-lgp", "groups_in": 3, "groups_out": 1, "rank": 5},
                 "W_hh": {"module": "lowrank-lgp", "groups_in": 2, "groups_out": 2, "rank": 5}}),
    (64, 96, 16, {"W_ih": {"module": "lgp-shuffle", "groups": 2}, "W_hh": {"module": "lowrank-lgp", "groups_in": 2,
                                                                          "groups_out": 2, "rank": 2}}),
    # both products LGP-shuffle with the same g: the dense form's block-local path (no shuffles; gates per
    # block): c = d / g = 4, 10 (not multiples of 8), 48; e != d
    (40, 40, 8, {"W_ih": {"module": "lgp-shuffle", "groups": 10}, "W_hh": {"module": "lgp-shuffle", "groups": 10}}),
    (24, 40, 8, {"W_ih": {"module": "lgp-shuffle", "groups": 4}, "W_hh": {"module": "lgp-shuffle", "groups": 4}}),
    (64, 96, 16, {"W_ih": {"module": "lgp-shuffle", "groups": 2}, "W_hh": {"module": "lgp-shuffle", "groups": 2}}),
]


def layer(e, d, ds, comp, seed=0):
    rng = np.random.default_rng(seed)
    cell = get_cell("antman-skim-lstm" if ds else "antman-lstm")
    return cell, cell.weights(random_layer_weights(rng, e, d, ds, compression=comp), "rnn.")


@pytest.fixture(params=[True, False], ids=["avx2", "scalar"])
def simd(request):
    was = _k.has_avx2()
    if request.param and not _k.set_avx2(True):
        _k.set_avx2(was)
        pytest.skip("no AVX2+FMA on this CPU")
    _k.set_avx2(request.param)
    yield request.param
    _k.set_avx2(was)


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("skims", [False, True])
def test_fast_equals_reference(case, skims, simd):
    e, d, ds, comp = CASES[case]
    ds = ds if skims else 0
    cell, w = layer(e, d, ds, comp, seed=case)
    x = np.random.default_rng(10 + case).standard_normal((130, e)).astype(np.float32)  # > one block of 48
    for thr in ((0.3, 0.5, 0.7, 1.0, float("nan")) if skims else (0.5,)):
        ref, out = cell.reference(w, x, thr), fast_antman.run_layer(w, x, thr)
        assert_same_layer_output(ref, out, f"case {case} thr {thr}", tol=TOL)
        if skims and thr == 0.5:
            assert 0 < out.skimmed < len(x), "the test needs both decisions"


def test_empty_and_bad_inputs():
    cell, w = layer(*CASES[0][:3], CASES[0][3])
    out = fast_antman.run_layer(w, np.zeros((0, 20), np.float32), 0.5)
    assert out.hs.shape == (0, 40) and out.skim.shape == (0,)
    with pytest.raises(ValueError, match=r"expected \(T, 20\)"):
        fast_antman.run_layer(w, np.zeros((3, 21), np.float32), 0.5)
    P = fast_antman.packed(w)
    hs, sk, p = np.empty((3, 40), np.float32), np.empty(3, np.bool_), np.empty(3, np.float32)
    with pytest.raises(ValueError, match="outside the blob"):
        _k.run(P.blob[:100], P.meta, np.zeros((3, 20), np.float32), 3, 0.5, hs, sk, p)
    meta = P.meta.copy()
    meta[11 + 2] = 7   # W_ih's first stage: rows no longer give 4d
    with pytest.raises(ValueError, match="meta"):
        _k.run(P.blob, meta, np.zeros((3, 20), np.float32), 3, 0.5, hs, sk, p)


def test_packing_is_cached_per_weights_object():
    _, w = layer(*CASES[1][:3], CASES[1][3])
    assert fast_antman.packed(w) is fast_antman.packed(w)


def test_served_models_run_on_the_fast_kernel(tmp_path):
    from service.api.app import create_app
    from service.config import Settings
    from service.registry import Registry

    e, d, ds, comp = CASES[1]
    root = tmp_path / "models"
    make_random_classifier(root / "am", e=e, d=d, d_small=0, seed=3, compression=comp)
    make_random_classifier(root / "am-skim", e=e, d=d, d_small=ds, seed=4, compression=comp)
    assert get_backend("auto", "antman-lstm").name == "fast"
    fast_reg = Registry(root, kernel="fast").load_all()
    ref_reg = Registry(root, kernel="reference").load_all()
    text = "good film , not bad . the plot was very boring but the acting was great " * 3
    answers = {}
    for label, reg in (("fast", fast_reg), ("reference", ref_reg)):
        with TestClient(create_app(Settings(models_dir=str(root)), reg)) as client:
            for name in ("am", "am-skim"):
                r = client.post("/classify", params={"model": name, "explain": "true", "threshold": 0.5},
                                json={"text": text})
                assert r.status_code == 200, r.text
                answers[label, name] = r.json()
    for name in ("am", "am-skim"):
        f, r = answers["fast", name], answers["reference", name]
        assert f["label"] == r["label"] and f["skimmed"] == r["skimmed"]
        assert f["flops"] == r["flops"] and f["flop_reduction"] == r["flop_reduction"]
        assert f["probabilities"] == pytest.approx(r["probabilities"], abs=1e-5)


@pytest.mark.parametrize("case", range(len(CASES)))
def test_fast_equals_the_dense_kernel_on_the_reconstructed_matrices(case):
    """The compiled AntMan layer against the compiled dense kernel (_skimkernel.c) run on the modules'
    explicit m x n matrices: the same layer two ways, identical decisions."""
    fast = pytest.importorskip("service.engine.fast", reason="the dense kernel is not built")
    from service.engine.layer import LayerWeights

    e, d, ds, comp = CASES[case]
    cell, w = layer(e, d, ds, comp, seed=20 + case)
    dense = LayerWeights(w.W_ih.dense().astype(np.float32), w.W_hh.dense().astype(np.float32), w.b,
                         w.Ws_ih, w.Ws_hh, w.bs, w.Wd, w.bd)
    x = np.random.default_rng(30 + case).standard_normal((90, e)).astype(np.float32)
    for thr in (0.5, 1.0):
        assert_same_layer_output(fast.run_layer(dense, x, thr), fast_antman.run_layer(w, x, thr),
                                 f"case {case} thr {thr}", tol=TOL)

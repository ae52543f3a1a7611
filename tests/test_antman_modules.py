"""AntMan modules (service/cells/antman_modules.py) against their explicit dense reconstruction."""
import numpy as np
import pytest

from service.cells import antman_modules as A

CASES = [  # (spec, m, n): LSTM-like (4d x e) and square / wide products, every module
    ({"module": "dense"}, 24, 10),
    ({"module": "lgp-shuffle", "groups": 2}, 24, 10),
    ({"module": "lgp-shuffle", "groups": 5}, 40, 10),
    ({"module": "lgp-shuffle", "groups": 1}, 8, 4),
    ({"module": "lgp-dense", "groups": 2}, 24, 10),      # n <= m: mix before
    ({"module": "lgp-dense", "groups": 4}, 8, 16),       # m < n: mix after
    ({"module": "lowrank-lgp", "groups_in": 2, "groups_out": 2, "rank": 2}, 40, 20),
    ({"module": "lowrank-lgp", "groups_in": 5, "groups_out": 10, "rank": 2}, 40, 20),
    ({"module": "lowrank-lgp", "groups_in": 1, "groups_out": 3, "rank": 4}, 12, 12),
]


def build(spec, m, n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return A.from_weights(A.random_tensors(spec, m, n, rng, "rnn.W_ih", dtype=dtype), "rnn.W_ih")


@pytest.mark.parametrize("spec,m,n", CASES)
def test_apply_equals_dense_reconstruction(spec, m, n):
    mod = build(spec, m, n, np.float64)
    assert mod.kind == spec["module"] and mod.shape == (m, n) and mod.spec() == spec
    D = mod.dense()
    assert D.shape == (m, n)
    rng = np.random.default_rng(1)
    x, X = rng.standard_normal(n), rng.standard_normal((7, n))
    np.testing.assert_allclose(mod.apply(x), D @ x, rtol=0, atol=1e-12)
    np.testing.assert_allclose(mod @ x, D @ x, rtol=0, atol=1e-12)
    np.testing.assert_allclose(mod.apply(X), X @ D.T, rtol=0, atol=1e-12)
    # float32 weights and inputs: within float32 rounding of the float64 product of the same numbers
    m32 = build(spec, m, n, np.float32)
    x32 = x.astype(np.float32)
    y = m32.apply(x32)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, m32.dense().astype(np.float64) @ x32.astype(np.float64), rtol=0, atol=1e-5)


@pytest.mark.parametrize("spec,m,n", CASES)
def test_macs_are_table1_and_the_factors_nonzeros(spec, m, n):
    mod = build(spec, m, n, np.float64)
    kind = spec["module"]
    table1 = {"dense": lambda: m * n,
              "lgp-shuffle": lambda: m * n / spec["groups"],
              "lgp-dense": lambda: m * n / spec["groups"] + min(m, n) ** 2,
              "lowrank-lgp": lambda: (m * n / (spec["rank"] * spec["groups_out"])
                                      + n * n / (spec["rank"] * spec["groups_in"]) + n * n / spec["rank"] ** 2)}
    assert mod.macs == table1[kind]()
    # random weights are nonzero a.s., so the explicit factors' nonzeros are what a product multiplies
    assert mod.macs == sum(np.count_nonzero(F) for F in mod.factors())
    if kind in ("dense", "lgp-shuffle"):
        assert mod.macs == np.count_nonzero(mod.dense())


def test_shuffle_is_the_transpose_of_the_group_outputs():
    blocks = np.arange(2 * 3 * 2, dtype=np.float64).reshape(2, 3, 2)
    mod = A.LGPShuffle(blocks)
    x = np.array([1.0, 2.0, 3.0, 4.0])
    V = np.stack([blocks[0] @ x[:2], blocks[1] @ x[2:]])  # (g, m/g)
    y = mod.apply(x)
    for k in range(2):
        for j in range(3):
            assert y[j * 2 + k] == V[k, j]


def test_paper_example_costs():
    """Section 3.5: a 1000 x 400 product; LGP-Shuffle g=10 -> 40K, LGP-Dense g=10 -> 200K (as the paper counts
    its example), LowRank-LGP g=10 r=4 -> 24K."""
    rng = np.random.default_rng(0)
    sh = A.from_weights(A.random_tensors({"module": "lgp-shuffle", "groups": 10}, 1000, 400, rng, "K"), "K")
    assert sh.macs == 40_000
    ld = A.from_weights(A.random_tensors({"module": "lgp-dense", "groups": 10}, 1000, 400, rng, "K"), "K")
    assert ld.macs == 40_000 + 160_000
    lr = A.from_weights(A.random_tensors({"module": "lowrank-lgp", "groups_in": 10, "groups_out": 10, "rank": 4},
                                         1000, 400, rng, "K"), "K")
    assert lr.macs == 1000 * 400 // 40 + 400 * 400 // 16 + 400 * 400 // 40 == 24_000


@pytest.mark.parametrize("spec,m,n,match", [
    ({"module": "lgp-shuffle", "groups": 3}, 24, 10, "groups=3 does not divide n=10"),
    ({"module": "lgp-shuffle", "groups": 0}, 24, 10, "groups=0"),
    ({"module": "lgp-dense", "groups": 7}, 24, 14, "groups=7 does not divide m=24"),
    ({"module": "lowrank-lgp", "groups_in": 2, "groups_out": 2, "rank": 3}, 40, 20, "rank=3 does not divide n=20"),
    ({"module": "lowrank-lgp", "groups_in": 4, "groups_out": 2, "rank": 2}, 40, 20, "groups_in=4 does not divide n/rank=10"),
    ({"module": "lowrank-lgp", "groups_in": 2, "groups_out": 3, "rank": 2}, 40, 20, "groups_out=3 does not divide m=40"),
    ({"module": "butterfly"}, 4, 4, "unknown module 'butterfly'"),
])
def test_non_dividing_specs_refused(spec, m, n, match):
    with pytest.raises(ValueError, match=match):
        A.expected_shapes(spec, m, n)


@pytest.mark.parametrize("weights,match", [
    ({"K.blocks": np.zeros((2, 3), np.float32)}, r"K.blocks has shape \(2, 3\)"),
    ({"K.blocks": np.zeros((2, 4, 3), np.float32), "K.mix": np.zeros((5, 5), np.float32)},
     r"K.mix has shape \(5, 5\), expected \(6, 6\)"),
    ({"K.in_blocks": np.zeros((2, 5, 10), np.float32), "K.mix": np.zeros((10, 10), np.float32)},
     "missing tensor K.out_blocks"),
    ({"K.in_blocks": np.zeros((2, 5, 10), np.float32), "K.mix": np.zeros((10, 10), np.float32),
      "K.out_blocks": np.zeros((2, 20, 4), np.float32)}, "K.out_blocks has shape"),
    ({"K.in_blocks": np.zeros((2, 5, 10), np.float32), "K.mix": np.zeros((9, 9), np.float32),
      "K.out_blocks": np.zeros((2, 20, 5), np.float32)}, r"K.mix has shape \(9, 9\)"),
    ({"K.in_blocks": np.zeros((1, 3, 10), np.float32), "K.mix": np.zeros((3, 3), np.float32),
      "K.out_blocks": np.zeros((1, 20, 3), np.float32)}, "must divide the input size 10"),
    ({"K": np.zeros((4, 4), np.float32), "K.blocks": np.zeros((2, 2, 2), np.float32)}, "both dense and compressed"),
    ({"K": np.zeros(4, np.float32)}, r"K has shape \(4,\)"),
    ({}, "missing tensor K"),
])
def test_bad_tensors_refused_naming_the_tensor(weights, match):
    with pytest.raises(ValueError, match=match):
        A.from_weights(weights, "K")

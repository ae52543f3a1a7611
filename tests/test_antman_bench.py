"""benchmarks/antman.py on random layers and random AntMan artifacts (no trained model needed): the table's
theoretical speed-ups are Table 1's, every kernel that is built is timed, and the model part finds the
AntMan models and their teachers."""
import json

import pytest

from benchmarks import antman as B
from random_model import make_random_classifier
from service import flops as F

COMP = {"W_ih": {"module": "lgp-shuffle", "groups": 4}, "W_hh": {"module": "lowrank-lgp", "groups_in": 2,
                                                                 "groups_out": 4, "rank": 2}}


@pytest.fixture
def models(tmp_path):
    root = tmp_path / "models"
    make_random_classifier(root / "teacher", e=20, d=40, d_small=0, seed=1, name="random-dense-teacher")
    make_random_classifier(root / "student", e=20, d=40, d_small=0, seed=2, compression=COMP, name="am-student")
    make_random_classifier(root / "skim", e=20, d=40, d_small=8, seed=3, compression=COMP, name="am-skim",
                           training={"dataset": "toyds"})
    make_random_classifier(root / "other", e=20, d=40, d_small=8, seed=4, name="plain-skim",
                           training={"dataset": "toyds"})
    make_random_classifier(root / "other2", e=20, d=40, d_small=8, seed=4, name="plain-skim-elsewhere",
                           training={"dataset": "otherds"})
    make_random_classifier(root / "unrelated", e=20, d=40, d_small=0, seed=5, name="plain-lstm")
    return root


def test_benchmark_writes_the_table(models, tmp_path):
    out = tmp_path / "out"
    assert B.main(["--quick", "--sizes", "40", "--models-dir", str(models), "--texts", "3", "--out", str(out)]) == 0
    result = json.loads((out / "antman.json").read_text())
    syn = result["synthetic"]
    assert [r["config"] for r in syn] == ["dense", *B.CONFIGS]
    for r in syn:
        spec = r["spec"]
        macs = 2 * F.module_macs(spec, 160, 40)   # both products, the same module
        assert r["macs_per_token"] == macs
        assert r["theoretical_speedup"] == pytest.approx(F.read_flops(40, 40) / (2 * macs + 10 * 40))
        assert r["reference_us_per_token"] > 0
        if result["antman_fast_kernel"] and r["config"] != "dense":
            assert r["fast_us_per_token"] > 0 and r["speedup_vs_fast_dense"] > 0
    g10 = next(r for r in syn if r["config"] == "LGP-Shuffle g=10")
    assert g10["theoretical_speedup_products"] == pytest.approx(10.0)
    roles = {r["model"]: r["role"] for r in result["models"]}
    # the Skim-LSTM of am-skim's dataset joins (no such test split: random ids), not those of other datasets
    assert roles == {"am-skim": "antman", "am-student": "antman", "random-dense-teacher": "teacher",
                     "plain-skim": "skim"}
    student = next(r for r in result["models"] if r["model"] == "am-student")
    assert student["compression"] == COMP and student["teacher"] == "random-dense-teacher"
    assert student["flop_reduction"] == pytest.approx(F.read_flops(20, 40) / F.antman_read_flops(
        40, F.module_macs(COMP["W_ih"], 160, 20), F.module_macs(COMP["W_hh"], 160, 40)), rel=0.02)  # head: 2%
    assert student["flops_per_token"] * student["flop_reduction"] == pytest.approx(
        next(r for r in result["models"] if r["model"] == "random-dense-teacher")["flops_per_token"], rel=1e-9)
    md = (out / "antman.md").read_text()
    assert "| 40 | LGP-Shuffle g=10 | 8.78x (10.00x) |" in md and "am-student" in md


def test_sizes_the_groups_do_not_divide_are_refused(tmp_path):
    with pytest.raises(ValueError, match="does not divide"):
        B.main(["--quick", "--sizes", "30", "--models-dir", str(tmp_path), "--out", str(tmp_path)])

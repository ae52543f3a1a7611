"""The served QA readers give the same answers in every engine: NumPy reference vs the compiled `fast`
kernel vs PyTorch (training/qa_torch.py, the model as trained), on the same weights and the first SQuAD
test questions: identical skim decisions in every layer and direction, identical spans, logits within
1e-4. Also a random skim reader, at several thresholds, on texts of every length down to one token."""
import numpy as np
import pytest

from conftest import MODELS_DIR
from random_model import make_random_reader
from service.artifacts import load_artifact
from service.families import build_model
from service.families.qa import decode_span

THRESHOLDS = [0.5, (0.5, 0.3), 0.2, 1.0, 0.0]


def same_answers(a, b, ctx_ids, q_ids, thr):
    sa, ea, ra = a.forward(ctx_ids, q_ids, thr)
    sb, eb, rb = b.forward(ctx_ids, q_ids, thr)
    for x, y in zip(ra, rb):
        assert x.layer.name == y.layer.name
        np.testing.assert_array_equal(x.out.skim, y.out.skim, err_msg=x.layer.name)
        np.testing.assert_allclose(x.out.p_skim, y.out.p_skim, atol=1e-5)
    np.testing.assert_allclose(sa, sb, atol=1e-4)
    np.testing.assert_allclose(ea, eb, atol=1e-4)
    assert decode_span(sa, ea, 15)[:2] == decode_span(sb, eb, 15)[:2]
    return sa, ea, ra


@pytest.fixture(scope="module")
def random_reader(tmp_path_factory):
    root = tmp_path_factory.mktemp("reader")
    make_random_reader(root / "r", d_small=3, seed=5)
    art = load_artifact(root / "r")
    return build_model(art, "reference"), build_model(art, "fast")


@pytest.mark.parametrize("T", [1, 2, 7, 40])
@pytest.mark.parametrize("thr", THRESHOLDS)
def test_random_reader_fast_equals_reference(random_reader, T, thr):
    ref, fast = random_reader
    assert fast.kernel_name == "fast"
    rng = np.random.default_rng(T)
    ctx = rng.integers(1, len(ref.artifact.vocab), T)
    q = rng.integers(1, len(ref.artifact.vocab), 3)
    same_answers(ref, fast, ctx, q, thr)


def shipped_questions(n):
    squad = pytest.importorskip("training.squad")
    try:
        examples = squad.load_squad("test")[:n]
    except FileNotFoundError:
        pytest.skip("SQuAD test split not found")
    return examples


@pytest.mark.parametrize("name", ["squad-skim-lstm-att", "squad-lstm-att"])
def test_shipped_reader_numpy_fast_torch_agree(name):
    torch = pytest.importorskip("torch")
    qa_torch = pytest.importorskip("training.qa_torch")
    art = load_artifact(MODELS_DIR / name)
    ref, fast = build_model(art, "reference"), build_model(art, "fast")
    tm = qa_torch.from_artifact(art)
    torch.set_num_threads(1)
    for ex in shipped_questions(12):
        ctx = fast.to_ids(fast.tokenize(ex.context))
        q = fast.to_ids(fast.tokenize(ex.question))
        for thr in (fast.default_threshold, 0.5, (0.5, 0.2)):
            s, e, results = same_answers(ref, fast, ctx, q, thr)
            per = tuple(thr) if isinstance(thr, tuple) else (thr, thr)
            ts, te, tdec = qa_torch.infer(tm, ctx, q, per)
            for r in results:
                np.testing.assert_array_equal(r.out.skim, tdec[r.layer.name][0], err_msg=f"{ex.id} {r.layer.name}")
            np.testing.assert_allclose(s, ts, atol=1e-4)
            np.testing.assert_allclose(e, te, atol=1e-4)
            assert decode_span(s, e, 15)[:2] == decode_span(ts, te, 15)[:2]

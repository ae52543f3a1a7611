import numpy as np

from service.artifacts import load_artifact
from service.families import build_model


def test_random_model_classifies(random_models_dir):
    m = build_model(load_artifact(random_models_dir / "tiny-skim"), kernel="reference")
    r = m.classify("This film was not very good .", threshold=0.5)
    assert r.cost.tokens == 7
    assert abs(sum(r.probabilities.values()) - 1) < 1e-5
    never = m.classify("This film was not very good .", threshold=1.0)
    assert never.cost.skimmed == 0 and never.cost.flops > never.cost.flops_full  # decision layer costs extra
    always = m.classify("This film was not very good .", threshold=0.0)
    assert always.cost.skimmed >= r.cost.skimmed >= never.cost.skimmed
    assert np.all(always.layer.p_skim > 0)

"""The fast training forward of the Skim-LSTM (fused projections, one step function) computes the same
function and gradients as the reference per-step loop, given the same Gumbel noise."""
import pytest

torch = pytest.importorskip("torch")

from training import torch_models  # noqa: E402
from training.torch_models import SkimLSTMClassifier, skim_loss  # noqa: E402


def _pair(d=12, ds=3, e=7, V=30):
    torch.manual_seed(0)
    emb = torch.randn(V, e)
    m = SkimLSTMClassifier(emb, d, ds, 2, dropout=0.0, freeze_emb=False)
    with torch.no_grad():
        m.bd.uniform_(-1, 1)
    return m.double().train()


def _run(model, ids, lengths, tau, gumbel, fast, monkeypatch):
    model.zero_grad()
    if fast:
        logits, aux = model._forward_train_fast(ids, lengths, tau, gumbel=gumbel)
    else:
        steps = iter(gumbel.unbind(0))
        monkeypatch.setattr(torch_models.F, "gumbel_softmax",
                            lambda logits, tau, hard: torch.softmax((logits + next(steps)) / tau, -1))
        model.fast_train = False
        logits, aux = model(ids, lengths, tau=tau)
        model.fast_train = True
        monkeypatch.undo()
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 1])) + skim_loss(aux, 0.05)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logits.detach(), aux[0].detach(), grads


@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_fast_train_forward_matches_reference(tau, monkeypatch):
    model = _pair()
    B, T = 3, 9
    ids = torch.randint(1, 30, (B, T))
    lengths = torch.tensor([9, 4, 1])
    gumbel = -torch.empty(T, B, 2, dtype=torch.float64).exponential_().log()
    ref = _run(model, ids, lengths, tau, gumbel, False, monkeypatch)
    fast = _run(model, ids, lengths, tau, gumbel, True, monkeypatch)
    assert torch.allclose(ref[0], fast[0], atol=1e-12)
    valid = (torch.arange(T)[None] < lengths[:, None])[..., None]
    assert torch.allclose(ref[1] * valid, fast[1] * valid, atol=1e-12)
    assert ref[2].keys() == fast[2].keys() and len(ref[2]) >= 10
    for name in ref[2]:
        assert torch.allclose(ref[2][name], fast[2][name], atol=1e-10), name

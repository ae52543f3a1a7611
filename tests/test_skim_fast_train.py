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


def _gumbel_softmax_with(steps):
    """F.gumbel_softmax drawing its noise from steps (one (B, 2) tensor per call)."""
    def gs(logits, tau, hard):
        y = torch.softmax((logits + next(steps)) / tau, -1)
        if not hard:
            return y
        one_hot = torch.nn.functional.one_hot(y.argmax(-1), 2).to(y.dtype)
        return one_hot - y.detach() + y
    return gs


def _run(model, ids, lengths, tau, gumbel, fast, monkeypatch):
    model.zero_grad()
    if fast:
        logits, aux = model._forward_train_fast(ids, lengths, tau, gumbel=gumbel)
    else:
        steps = iter(gumbel.unbind(0))
        monkeypatch.setattr(torch_models.F, "gumbel_softmax", _gumbel_softmax_with(steps))
        model.fast_train = False
        logits, aux = model(ids, lengths, tau=tau)
        model.fast_train = True
        monkeypatch.undo()
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 1])) + skim_loss(aux, 0.05)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logits.detach(), aux[0].detach(), grads


@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_fast_train_forward_matches_reference(tau, hard, monkeypatch):
    model = _pair()
    model.hard_gumbel = hard
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



def test_hard_gumbel_step_takes_whole_states():
    """Straight-through: the forward value of a step is the read state or the skim state whole (the limit
    tau -> 0 of the soft mixture), as serving computes it; the soft step mixes them; gradients still flow."""
    torch.manual_seed(1)
    B, d, ds = 5, 6, 2
    G = 4 * d + 4 * ds + 2
    pre, h, c = torch.randn(B, G, dtype=torch.float64), torch.randn(B, d, dtype=torch.float64), \
        torch.randn(B, d, dtype=torch.float64)
    W = (torch.randn(G, d, dtype=torch.float64) * 0.3).requires_grad_()
    g = -torch.empty(B, 2, dtype=torch.float64).exponential_().log()
    m = torch.ones(B, 1, dtype=torch.float64)

    def step(inv_tau, hard):
        return torch_models.skim_step(pre, h, c, W, g, torch.tensor(inv_tau, dtype=torch.float64), m, d, ds, hard)

    h_hard, c_hard, _ = step(1 / 0.7, True)
    h_limit, c_limit, _ = step(1e9, False)
    h_soft, _, _ = step(1 / 0.7, False)
    assert torch.allclose(h_hard, h_limit, atol=1e-12) and torch.allclose(c_hard, c_limit, atol=1e-12)
    assert not torch.allclose(h_hard, h_soft, atol=1e-6)
    h_hard.sum().backward()
    assert W.grad is not None and W.grad[4 * d + 4 * ds:].abs().sum() > 0  # the decision layer learns

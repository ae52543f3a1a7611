"""GPU layer kernel (PyTorch CUDA), for comparing hardware: kernel names "torch-cuda" and "torch-cpu".

- Plain LSTM layers run as one torch.nn.LSTM call (cuDNN on CUDA) with the artifact's weights copied
  in: the gate order i, f, g, o is torch's; the summed bias goes into bias_ih, bias_hh is zero.
- Skim-LSTM layers run on the device with no host round-trip inside the sequence (gpu_skim.py: the
  decision taken on the device, both cells computed, the result selected; one register-resident CUDA
  kernel on CUDA (gpu_cuda.py), the fused Triton kernel for layers too wide for it, a CUDA graph without
  Triton, an eager loop on CPU). run_layers_on runs a batch of texts at once
  (the dynamic batcher, gpu_batch.py, calls it). mode="sync" keeps the first version for comparison: a
  per-token loop that reads p_skim back to the host at every token (a device->host sync per token) and
  then runs either the big or the small cell.
  Every mode applies the canonical rule of layer.decide: skim iff float32(p_skim) > float32(threshold).

torch is imported lazily: the runtime never needs it unless this kernel is chosen. TF32 is turned off
so results match the float32 NumPy reference (to ~1e-5) and decisions are identical.
The device comes from the kernel name (torch-cuda / torch-cpu), or the torch_device setting
(e.g. "cuda:1") for torch-cuda.
"""
from __future__ import annotations

import threading

import numpy as np

from .layer import LayerOutput, LayerWeights, decide

NAME = "torch-cuda"

_torch = None
_lock = threading.Lock()



def host_array(a) -> np.ndarray:
    """float32, C order and no negative stride: a backward direction's reversed view of one token is
    'contiguous' to NumPy (a size-1 axis) but torch refuses its negative stride."""
    a = np.ascontiguousarray(a, np.float32)
    return a if all(st >= 0 for st in a.strides) else a.copy()

def _import_torch():
    global _torch
    if _torch is None:
        import torch  # noqa: PLC0415  (lazy on purpose)

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        _torch = torch
    return _torch


def cuda_available() -> bool:
    try:
        return _import_torch().cuda.is_available()
    except ImportError:
        return False


class _Prepared:
    """A layer's weights on one device (built once per layer and device, then reused)."""

    def __init__(self, w: LayerWeights, device):
        torch = _import_torch()
        t = lambda a: torch.as_tensor(np.ascontiguousarray(a, np.float32), device=device)  # noqa: E731
        self.w = w  # keep the arrays alive so id(w) stays unique while cached
        self.device = device
        e, d, ds = w.input_size, w.hidden_size, w.small_size
        self.d, self.ds = d, ds
        if not w.skims:
            lstm = torch.nn.LSTM(e, d, num_layers=1, batch_first=False).to(device)
            with torch.no_grad():
                lstm.weight_ih_l0.copy_(t(w.W_ih))
                lstm.weight_hh_l0.copy_(t(w.W_hh))
                lstm.bias_ih_l0.copy_(t(w.b))
                lstm.bias_hh_l0.zero_()
            lstm.flatten_parameters() if device.type == "cuda" else None
            lstm.eval()
            self.lstm = lstm
            return
        # one stacked input projection: [W_ih; Ws_ih; Wd_x] (4d + 4ds + 2, e)
        self.W_in = t(np.concatenate([w.W_ih, w.Ws_ih, w.Wd[:, :e]], axis=0))
        self.b_in = t(np.concatenate([w.b, w.bs, w.bd]))
        self.W_hh = t(w.W_hh)          # (4d, d)
        self.Ws_hh = t(w.Ws_hh)        # (4ds, d)
        self.Wd_h = t(w.Wd[:, e:])     # (2, d)
        # gpu_skim: one recurrent product per step over [W_hh; Ws_hh; Wd_h], captured graphs per bucket
        self.W_rec = torch.cat([self.W_hh, self.Ws_hh, self.Wd_h]).contiguous()
        self.P = self.W_rec.shape[0]
        self.graphs: dict = {}
        self.graph_lock = threading.Lock()


_cache: dict[tuple[int, str], _Prepared] = {}


def _prepared(w: LayerWeights, device) -> _Prepared:
    key = (id(w), str(device))
    p = _cache.get(key)
    if p is None or p.w is not w:
        with _lock:
            p = _cache.get(key)
            if p is None or p.w is not w:
                p = _cache[key] = _Prepared(w, device)
    return p


def _cell(gates, c, n):
    torch = _torch
    i = torch.sigmoid(gates[:n])
    f = torch.sigmoid(gates[n:2 * n])
    g = torch.tanh(gates[2 * n:3 * n])
    o = torch.sigmoid(gates[3 * n:])
    c_new = f * c + i * g
    return o * torch.tanh(c_new), c_new


def run_layers_on(w: LayerWeights, xs: list[np.ndarray], thresholds: list[float], device="cuda",
                  mode: str | None = None, budgets=None) -> list[LayerOutput]:
    """A batch of texts through one layer, each with its own threshold. mode: gpu_skim.MODES (None: the
    device's default) or "sync" (the per-token host-sync loop, one text at a time). A FLOP budget
    (service/engine/budget.py) is applied on the device by the `cuda` kernel; where that kernel does not
    run, a skim layer with a budget runs on "sync" (the rule then runs per token on the host)."""
    torch = _import_torch()
    device = torch.device(device)
    p = _prepared(w, device)
    budgets = budgets or [None] * len(xs)
    if mode == "sync" or not xs:
        return [_run_sync(torch, p, w, x, thr, device, b) for x, thr, b in zip(xs, thresholds, budgets)]
    with torch.inference_mode():
        if not w.skims:
            return _run_dense(torch, p, xs, device)
        from . import gpu_skim

        outs = gpu_skim.run_batch(torch, p, [np.asarray(x, np.float32) for x in xs], thresholds, mode, budgets)
    if outs is None:  # budgets, and no kernel here that applies them on the device
        return [_run_sync(torch, p, w, x, thr, device, b) for x, thr, b in zip(xs, thresholds, budgets)]
    d = p.d
    return [LayerOutput(np.ascontiguousarray(o[:, :d]), o[:, d + 1] > 0.5, np.ascontiguousarray(o[:, d]))
            for o in outs]


def _run_dense(torch, p, xs, device) -> list[LayerOutput]:
    """cuDNN over the batch: packed sequences, so a short text does not pay for a long one."""
    lengths = [int(x.shape[0]) for x in xs]
    empty = lambda: LayerOutput(np.zeros((0, p.d), np.float32), np.zeros(0, bool), np.zeros(0, np.float32))  # noqa: E731
    live = [i for i, n in enumerate(lengths) if n]
    outs = [empty() for _ in xs]
    if not live:
        return outs
    ts = [torch.as_tensor(host_array(xs[i])).to(device) for i in live]
    if len(ts) == 1:
        hs = p.lstm(ts[0].unsqueeze(1))[0][:, 0].cpu().numpy()
        per = [hs]
    else:
        packed = torch.nn.utils.rnn.pack_sequence(ts, enforce_sorted=False)
        padded, _ = torch.nn.utils.rnn.pad_packed_sequence(p.lstm(packed)[0])
        host = padded.cpu().numpy()  # (T_max, B, d)
        per = [np.ascontiguousarray(host[:lengths[i], j]) for j, i in enumerate(live)]
    for i, hs in zip(live, per):
        n = lengths[i]
        outs[i] = LayerOutput(hs, np.zeros(n, bool), np.zeros(n, np.float32))
    return outs


def run_layer_on(w: LayerWeights, x: np.ndarray, threshold: float, device="cuda", budget=None,
                 mode: str | None = None) -> LayerOutput:
    return run_layers_on(w, [x], [threshold], device, mode, [budget])[0]


def _run_sync(torch, p, w, x, threshold, device, budget=None) -> LayerOutput:
    T, d, ds = x.shape[0], p.d, p.ds
    skim = np.zeros(T, bool)
    p_skim = np.zeros(T, np.float32)
    if T == 0:
        return LayerOutput(np.zeros((0, d), np.float32), skim, p_skim)
    with torch.inference_mode():
        xt = torch.as_tensor(host_array(x), device=device)
        if not w.skims:
            hs, _ = p.lstm(xt.unsqueeze(1))
            return LayerOutput(hs[:, 0].cpu().numpy(), skim, p_skim)
        proj = torch.addmm(p.b_in, xt, p.W_in.t())        # (T, 4d + 4ds + 2)
        gx, gsx, zx = proj[:, :4 * d], proj[:, 4 * d:4 * d + 4 * ds], proj[:, 4 * d + 4 * ds:]
        hs = torch.empty((T, d), dtype=torch.float32, device=device)
        h = torch.zeros(d, dtype=torch.float32, device=device)
        c = torch.zeros(d, dtype=torch.float32, device=device)
        spent = 0  # the FLOP budget (service/engine/budget.py): the same integer rule as every backend
        for t in range(T):
            z = zx[t] + torch.mv(p.Wd_h, h)
            pt = torch.sigmoid(z[1] - z[0])
            p_host = float(pt.item())              # device -> host sync: the decision is data-dependent
            p_skim[t] = p_host
            sk = decide(p_host, threshold) or (budget is not None and not budget.allows_read(spent, t, T))
            if budget is not None:
                spent += budget.step(sk)
            if sk:
                skim[t] = True
                h_s, c_s = _cell(gsx[t] + torch.mv(p.Ws_hh, h), c[:ds], ds)
                h = torch.cat([h_s, h[ds:]])
                c = torch.cat([c_s, c[ds:]])
            else:
                h, c = _cell(gx[t] + torch.mv(p.W_hh, h), c, d)
            hs[t] = h
        return LayerOutput(hs.cpu().numpy(), skim, p_skim)


def run_layer(w: LayerWeights, x: np.ndarray, threshold: float, budget=None) -> LayerOutput:
    from .backends import OPTIONS  # the torch_device setting

    return run_layer_on(w, x, threshold, OPTIONS["torch_device"], budget)


def run_layer_cpu(w: LayerWeights, x: np.ndarray, threshold: float, budget=None) -> LayerOutput:
    return run_layer_on(w, x, threshold, "cpu", budget)


def load(name: str):
    """Kernel for 'torch-cuda' / 'torch-cpu'. ImportError (-> logged fallback) if torch or CUDA is missing."""
    torch = _import_torch()  # ImportError without torch
    if name == "torch-cpu":
        return run_layer_cpu
    if not torch.cuda.is_available():
        raise ImportError("torch is installed but CUDA is not available")
    return run_layer

"""GPU layer kernel (PyTorch CUDA), for comparing hardware: kernel names "torch-cuda" and "torch-cpu".

- Plain LSTM layers run as one torch.nn.LSTM call (cuDNN on CUDA) with the artifact's weights copied
  in: the gate order i, f, g, o is torch's; the summed bias goes into bias_ih, bias_hh is zero.
- Skim-LSTM layers run a per-token loop on the device. The input projections of all tokens (big cell,
  small cell, decision layer) are computed in one matrix product up front; each step then computes
  the decision from h_{t-1}, reads p_skim back to the host (a device->host sync per token: that is the
  price of data-dependent control flow on a GPU) and applies the canonical rule of layer.decide:
  skim iff float32(p_skim) > float32(threshold). Then it runs either the big or the small cell.

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


def run_layer_on(w: LayerWeights, x: np.ndarray, threshold: float, device="cuda", budget=None) -> LayerOutput:
    torch = _import_torch()
    device = torch.device(device)
    p = _prepared(w, device)
    T, d, ds = x.shape[0], p.d, p.ds
    skim = np.zeros(T, bool)
    p_skim = np.zeros(T, np.float32)
    if T == 0:
        return LayerOutput(np.zeros((0, d), np.float32), skim, p_skim)
    with torch.inference_mode():
        xt = torch.as_tensor(np.ascontiguousarray(x, np.float32), device=device)
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

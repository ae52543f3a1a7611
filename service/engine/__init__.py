"""Recurrent-layer kernels behind one interface: run_layer(LayerWeights, x (T, e) float32, threshold) -> LayerOutput.

Kernels: "reference" (plain NumPy, the oracle) and the faster ones registered in backends.py.
"""
from .layer import LayerOutput, LayerWeights, decide  # noqa: F401

"""skimserve runtime: NumPy / ONNX Runtime inference for Skim-LSTM text models (no PyTorch)."""

__version__ = "0.1.0"

"""Training, export and evaluation of skimserve models (PyTorch only where training needs it)."""

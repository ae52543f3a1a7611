"""Plain NumPy reference of the gated cells (lstm, skim-lstm, skip-lstm): one token at a time, exactly the
equations (service/cells/gated.py). The oracle for every fast path; other cells have their own reference
in their cell module."""
from __future__ import annotations

from ..cells.gated import run_reference as run_layer  # noqa: F401

NAME = "reference"

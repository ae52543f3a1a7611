"""Recurrent cells: manifest 'cell' name -> Cell. A new cell is a module here that registers itself.

A cell owns three things: its weights type (built and shape-checked from an artifact's weights under a
layer's prefix), its FLOP formula (through service.flops) and its reference step (the NumPy oracle that
every fast backend is tested against). Backends (service.engine.backends) say which cells they run;
any other cell runs on its reference, with a logged notice.

    from service.cells import Cell, register_cell

    @register_cell
    class MyCell(Cell):
        name = "my-cell"
        ...
"""
from __future__ import annotations

from .base import Cell, LayerCost

CELLS: dict[str, Cell] = {}


def register_cell(cls: type[Cell]) -> type[Cell]:
    """Class decorator: registers one instance under cls.name (a later registration replaces it)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    CELLS[cls.name] = cls()
    return cls


def get_cell(name: str) -> Cell:
    if name not in CELLS:
        raise ValueError(f"unknown cell '{name}' (known: {', '.join(sorted(CELLS))})")
    return CELLS[name]


from . import antman_lstm, lstm, skim_lstm, skip_lstm  # noqa: E402,F401  (register the shipped cells)

__all__ = ["CELLS", "Cell", "LayerCost", "get_cell", "register_cell"]

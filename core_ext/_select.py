"""Pick the compiled module or its pure-Python twin (STYLE: every Cython module has one)."""
from __future__ import annotations

import os
from importlib import import_module
from types import ModuleType

__all__ = ["select"]


def select(compiled: str, twin: str) -> tuple[ModuleType, str]:
    """``(module, "cython" | "python")``: the twin when ``EDGEIM_NO_EXT`` is set (not "0")
    or when the extension is not built (a source checkout still runs, slower)."""
    if os.environ.get("EDGEIM_NO_EXT", "") not in ("", "0"):
        return import_module(twin, __package__), "python"
    try:
        return import_module(compiled, __package__), "cython"
    except ImportError:
        return import_module(twin, __package__), "python"

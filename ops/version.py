"""The version of this edgeim, also where package metadata is not at hand (a single-file
executable)."""
from __future__ import annotations

__all__ = ["VERSION"]


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("edgeim")
    except Exception:  # PackageNotFoundError, or no metadata in a frozen executable
        return _FALLBACK


#: kept in step with setup.py's version
_FALLBACK = "0.1.0"
VERSION = _version()

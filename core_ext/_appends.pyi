# Types of the compiled runs of new messages (_appends.pyx); same API as appends_py.py.
from typing import Any, Callable

__all__ = ["unknown", "lay_out", "inserted"]

def unknown(run: list[Any], staged: dict[tuple[int, str], tuple[int, str, int]],
            hashes: dict[tuple[int, str], int], key_hash: Callable[[int, str], int], stored: Any) -> bool: ...
def lay_out(run: list[Any], conn: Any, current_seq: Callable[[Any, str], int], last_seq: dict[str, int],
            staged: dict[tuple[int, str], tuple[int, str, int]], make: Callable[..., Any],
            outcomes: list[tuple[Any, Any, None]], touched: dict[tuple[int, str], int], fresh: dict[str, int],
            known_pairs: set[tuple[int, str]]) -> tuple[list[Any], list[tuple[Any, int]]]: ...
def inserted(new: list[tuple[Any, int]], touched: dict[tuple[int, str], int], fresh: dict[str, int],
             known_pairs: set[tuple[int, str]]) -> list[tuple[Any, int]]: ...

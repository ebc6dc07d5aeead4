"""The filter of stored retry keys alone: nanoseconds a call of ``add`` and of ``in``.

    python bench/key_filter.py [--keys 1048576 8388608] [--codec cython|python]

For each size: a filter made for that many keys, filled with as many random 64-bit
hashes, then asked for each of them. A call from Python includes the interpreter's own
cost of the call (what the store's writer pays as well). The baseline is an older
checkout on ``PYTHONPATH``, run after this one (the layout changed in 283184b: a key's
bits in one 64-byte block instead of anywhere in the layer).
"""
from __future__ import annotations

import argparse
import random
import time

from edgeim.core_ext import _keyfilter, keyfilter_py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, nargs="+", default=[1 << 20, 1 << 23])
    parser.add_argument("--codec", choices=["cython", "python"], default="cython")
    args = parser.parse_args()
    impl = _keyfilter if args.codec == "cython" else keyfilter_py
    for n in args.keys:
        rng = random.Random(1)
        hashes = [rng.getrandbits(64) - 2**63 for _ in range(n)]
        f = impl.KeyFilter(n)
        began = time.perf_counter()
        for h in hashes:
            f.add(h)
        added = time.perf_counter()
        held = sum(h in f for h in hashes)
        asked = time.perf_counter()
        assert held == n
        print(f"{n:>10,} keys ({f.nbytes / 2**20:.0f} MiB): add {(added - began) / n * 1e9:.0f} ns,"
              f" in {(asked - added) / n * 1e9:.0f} ns")


if __name__ == "__main__":
    main()

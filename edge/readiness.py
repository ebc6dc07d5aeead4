"""Whether the backends a node needs answer: one background probe per backend, with a
deadline, whose last outcome ``/readyz`` reads (a request never waits on a backend).

A probe runs every ``interval`` seconds. It counts as failed when it raises or has not
answered within ``deadline`` seconds; its backend is then down until a probe succeeds
within the deadline again. A probe still hanging past its deadline is not started again
until it ends (the backends bound their calls, so it does), so a hung server never piles
up probes.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

__all__ = ["Readiness"]

log = logging.getLogger("edgeim.readiness")


class Readiness:
    """``probes``: backend name -> a coroutine function that raises when the backend does
    not work. ``up`` maps each name to its last outcome (True until a probe fails)."""

    def __init__(self, probes: dict[str, Callable[[], Awaitable[Any]]], interval: float = 1.0,
                 deadline: float = 2.0) -> None:
        if interval <= 0 or deadline <= 0:
            raise ValueError("interval and deadline must be positive")
        self._probes = probes
        self.interval = interval
        self.deadline = deadline
        self.up: dict[str, bool] = dict.fromkeys(probes, True)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.get_running_loop().create_task(self._watch(name, probe))
                       for name, probe in self._probes.items()]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def down(self) -> list[str]:
        """The backends whose last probe failed, in the order given."""
        return [name for name, ok in self.up.items() if not ok]

    async def _watch(self, name: str, probe: Callable[[], Awaitable[Any]]) -> None:
        while True:
            attempt = asyncio.ensure_future(probe())
            try:
                done, _ = await asyncio.wait({attempt}, timeout=self.deadline)
                if done and attempt.exception() is None:
                    self._mark(name, True, None)
                else:
                    error = attempt.exception() if done else None
                    self._mark(name, False, error or f"no answer within {self.deadline:g} s")
                    if not done:  # let it end (or fail) before the next one starts
                        await asyncio.wait({attempt})
                        if not attempt.cancelled():
                            attempt.exception()  # retrieved: no "never retrieved" warning
            finally:
                attempt.cancel()  # (stop(): a probe in progress goes too)
            await asyncio.sleep(self.interval)

    def _mark(self, name: str, ok: bool, why: object) -> None:
        if ok != self.up[name]:
            if ok:
                log.warning("backend answers again: ready", extra={"backend": name})
            else:
                log.warning("backend does not answer: not ready", extra={"backend": name, "error": str(why)})
        self.up[name] = ok

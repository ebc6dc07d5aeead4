"""PresenceWatch's debounce, driven by a hand-run scheduler instead of the clock: the
changes of one user inside a window make one push, with the presence read when the
window closes, and a window that ends where the last push left things pushes nothing."""
from __future__ import annotations

import asyncio
from typing import Any, Callable

from edgeim.backends.memory import MemoryRoutes
from edgeim.backends.protocols import ConvId, NodeId, UserId
from edgeim.core_ext import bodies
from edgeim.core_ext.codec_py import decode_frame
from edgeim.core_ext.protocol import Op
from edgeim.services.presence import Audience, PresenceWatch
from edgeim.services.state import State

NODE = NodeId("n1")
BOB = UserId(7)


class Scheduler:
    """``call_later`` that only records; ``run_due`` runs what was scheduled."""

    def __init__(self) -> None:
        self.scheduled: list[tuple[float, Callable[[], None]]] = []

    def __call__(self, delay: float, fn: Callable[[], None]) -> Any:
        self.scheduled.append((delay, fn))
        return None

    async def run_due(self) -> None:
        due, self.scheduled = self.scheduled, []
        for _, fn in due:
            fn()
        await asyncio.sleep(0.01)  # the spawned pushes run


async def watch_with(routes: MemoryRoutes) -> tuple[PresenceWatch, Scheduler, list[tuple[bytes, str]]]:
    scheduler = Scheduler()
    pushed: list[tuple[bytes, str]] = []
    tasks: set[asyncio.Task[Any]] = set()

    def spawn(coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    watch = PresenceWatch(NODE, None, routes, State(None), Audience(True),  # type: ignore[arg-type]
                          lambda frame, conv: pushed.append((frame, conv)), lambda **_: None, spawn, scheduler,
                          debounce=2.0, rate=100, burst=100, max_watch=10)
    return watch, scheduler, pushed


def presence_of(frame: bytes) -> tuple[int, bool, list[str]]:
    op, _, _, target, body = decode_frame(frame)
    assert (op, target) == (Op.PRESENCE_PUSH, BOB)
    p = bodies.decode(body, bodies.UserPresence)
    return p.user, p.online, [t.terminal for t in p.terminals]


async def test_changes_inside_one_window_make_one_push_of_the_state_at_its_end():
    routes = MemoryRoutes()
    watch, scheduler, pushed = await watch_with(routes)

    for terminal in ("web", "ios", "android"):  # three comings, one going, in one window
        await routes.bind(BOB, terminal, NODE, 60)
        watch.changed(BOB)
    await routes.unbind(BOB, "android", NODE)
    watch.changed(BOB)

    assert [delay for delay, _ in scheduler.scheduled] == [2.0]  # one window, of the debounce
    assert pushed == []
    await scheduler.run_due()
    assert [(presence_of(f), conv) for f, conv in pushed] == [((BOB, True, ["ios", "web"]), ConvId("w7"))]


async def test_a_window_that_ends_as_the_last_push_left_things_pushes_nothing():
    routes = MemoryRoutes()
    watch, scheduler, pushed = await watch_with(routes)
    await routes.bind(BOB, "web", NODE, 60)
    watch.changed(BOB)
    await scheduler.run_due()

    await routes.unbind(BOB, "web", NODE)  # a flap: gone and back within the window
    watch.changed(BOB)
    await routes.bind(BOB, "web", NODE, 60)
    watch.changed(BOB)
    await scheduler.run_due()

    assert [presence_of(f) for f, _ in pushed] == [(BOB, True, ["web"])]
    await routes.unbind(BOB, "web", NODE)
    watch.changed(BOB)
    await scheduler.run_due()
    assert [presence_of(f) for f, _ in pushed][-1] == (BOB, False, [])


async def test_a_hidden_user_is_pushed_offline():
    routes = MemoryRoutes()
    watch, scheduler, pushed = await watch_with(routes)
    await routes.bind(BOB, "web", NODE, 60)
    await routes.set_hidden(BOB, True)
    watch.changed(BOB)
    await scheduler.run_due()
    assert [presence_of(f) for f, _ in pushed] == [(BOB, False, [])]

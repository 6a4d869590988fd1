"""The event loop every process runs on: uvloop where it is installed, else asyncio's own.

uvloop (libuv under asyncio's API) cuts the per-socket-write cost that dominates a profile of
the intake and the worker: every payment is several small writes to PostgreSQL and to HTTP
peers. `ENGINE_EVENT_LOOP=asyncio` (or `SIM_EVENT_LOOP` for the simulator) chooses asyncio's
loop instead, e.g. to compare the two or to debug.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

T = TypeVar("T")

Kind = Literal["uvloop", "asyncio"]


def new(kind: Kind = "uvloop") -> asyncio.AbstractEventLoop:
    """A new event loop of `kind`; asyncio's when uvloop is asked for but not installed."""
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:  # uvloop has no Windows build; asyncio's loop is correct there
            return asyncio.new_event_loop()
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, T], kind: Kind = "uvloop") -> T:
    """`asyncio.run(main)` on a loop of `kind`."""
    with asyncio.Runner(loop_factory=lambda: new(kind)) as runner:
        return runner.run(main)

"""The event loop every process runs on: uvloop where it is installed, else asyncio's own.

uvloop (libuv under asyncio's API) cuts the per-socket-write cost that dominates a profile of
the intake and the worker: every payment is several small writes to PostgreSQL and to HTTP
peers. `ENGINE_EVENT_LOOP=asyncio` (or `SIM_EVENT_LOOP` for the simulator) chooses asyncio's
loop instead, e.g. to compare the two or to debug.

`steady_heap` tunes the cyclic garbage collector once a process has started (see there).
"""

from __future__ import annotations

import asyncio
import gc
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


# Container allocations between two collections of the youngest generation (Python's default
# is 700). A worker's batch keeps thousands of short-lived objects (requests, rows, tasks)
# alive across its awaits, so at 700 most of them were scanned, survived and were scanned
# again in the older generations.
YOUNG_THRESHOLD = 10_000


def steady_heap() -> None:
    """Once started: what was loaded is frozen out of the cyclic collector, and it runs less.

    Modules, settings, pools and sessions live as long as the process, yet every full
    collection walked them all (some 65,000 objects in a worker). `gc.freeze` moves what is
    alive now to a generation no collection scans, after one last collection so no garbage is
    frozen; the larger young generation lets most of a batch's objects die (by reference
    counting) before a collection has to look at them. In a drain of 5,000 payments they took
    the worker's CPU in the collector from about 15 % of it to about 6 %, and its CPU per
    payment down 12 % (bench/workercpu.py).
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)

"""Waiting on a condition with a deadline: the only way tests here wait."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def wait_until(
    check: Callable[[], object], *, timeout: float, what: str, interval: float = 0.02
) -> object:
    """Await `check()` (sync or async) until truthy; fail naming `what` at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)

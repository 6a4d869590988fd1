"""Waiting on a condition with a deadline: the only way tests here wait."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def wait_until(
    check: Callable[[], T | Awaitable[T]],
    *,
    what: str,
    timeout: float = 5.0,
    interval: float = 0.02,
) -> T:
    """Await `check()` (sync or async) until truthy; fail naming `what` at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} ({result!r})")
        await asyncio.sleep(interval)

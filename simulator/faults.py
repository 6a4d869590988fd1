"""The faults the simulator injects, and how a call's answer is delivered through one: late,
as an error, or not at all (a reset or a dropped connection). Shared by the acquirer's
authorize and refund calls."""

import asyncio
import random
import socket
import struct
from dataclasses import dataclass, fields
from typing import Any, Literal

from aiohttp import web

from simulator.settings import SimulatorSettings

Json = dict[str, Any]

FaultKind = Literal["timeout", "error", "reset", "drop_after_charge", "down", "inquiry_error"]
FAULT_KINDS: tuple[FaultKind, ...] = (
    "timeout",
    "error",
    "reset",
    "drop_after_charge",
    "down",
    "inquiry_error",
)

# Status of the (never sent) response a handler returns after dropping the connection; it only
# shows in the access log. 444 is nginx's "connection closed without response".
DROPPED_STATUS = 444

# How often a hanging request checks whether its client has gone away.
HANG_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Faults:
    """Fault knobs; frozen, so a handler's snapshot stays consistent while it awaits."""

    latency_ms: int = 0
    latency_jitter_ms: int = 0
    timeout_rate: float = 0.0
    hang_ms: int = 30000
    timeout_after_charge: bool = True
    error_rate: float = 0.0
    error_status: int = 503
    reset_rate: float = 0.0
    drop_after_charge_rate: float = 0.0
    inquiry_error_rate: float = 0.0
    fault_seed: str = ""

    @classmethod
    def from_settings(cls, settings: SimulatorSettings) -> "Faults":
        """The configured defaults (SIM_* settings)."""
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})


def fault_rng(seed: str) -> random.Random:
    """The fault random stream: fixed by a non-empty seed, unpredictable otherwise."""
    return random.Random(seed or None)


def injected_error(status: int = 503) -> web.Response:
    """The answer of an injected error."""
    return web.json_response({"error": "injected"}, status=status)


def drop_connection(request: web.Request, *, reset: bool) -> web.Response:
    """Close the client's connection without an HTTP answer; return a response never sent.

    reset=True sends a TCP RST (the client sees "connection reset by peer"); otherwise a plain
    close (FIN), which an HTTP client reports as "server disconnected".
    """
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if reset and sock is not None:
            # Lingering on with a zero timeout makes the kernel answer close() with an RST.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        else:
            transport.close()
    # aiohttp writes this to the closed transport, which it quietly treats as a client
    # disconnection. Raising instead would log an error and a 500.
    return web.Response(status=DROPPED_STATUS)


async def hang(request: web.Request, seconds: float) -> None:
    """Wait `seconds`, or less if the client goes away (its answer could not arrive anyway)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (transport := request.transport) is not None and not transport.is_closing():
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        await asyncio.sleep(min(remaining, HANG_POLL_SECONDS))


async def respond(
    request: web.Request,
    fault: FaultKind | None,
    faults: Faults,
    delay: float,
    answer: Json,
    status: int,
) -> web.Response:
    """Deliver an answer (already decided and recorded) through this call's fault, if any."""
    await asyncio.sleep(delay)
    if fault == "reset":
        return drop_connection(request, reset=True)
    if fault == "error":
        return injected_error(faults.error_status)
    if fault == "drop_after_charge":
        return drop_connection(request, reset=False)
    if fault == "timeout":
        # Answered late if the client still waits: the stored answer, or a 504 if undecided.
        await hang(request, faults.hang_ms / 1000)
    return web.json_response(answer, status=status)

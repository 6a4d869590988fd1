"""`python -m simulator` as a process: its console logs have colours on a terminal only."""

from __future__ import annotations

import asyncio
import os
import pty
import signal
import socket
import sys
from pathlib import Path

import aiohttp

from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
ESC = b"\x1b"
# Starting a Python process and binding a port take well under this.
DEADLINE = 30.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _answers(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


async def _run_simulator(stdout: int) -> asyncio.subprocess.Process:
    """The simulator with console logs, its stdout to `stdout` and stderr to a pipe, until it
    has served one request (whose log line it writes), then stopped."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINE_", "SIM_"))}
    env |= {"SIM_PORT": str(port), "SIM_LOG_FORMAT": "console", "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulator",
        cwd=ROOT,
        env=env,
        stdout=stdout,
        stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/api/webhook/pg/DUMMY"
    await wait_until(lambda: _answers(url), what="the simulator answers", timeout=DEADLINE)
    proc.send_signal(signal.SIGTERM)
    return proc


async def test_logs_to_a_pipe_or_file_have_no_colour_codes() -> None:
    proc = await _run_simulator(asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), DEADLINE)
    assert proc.returncode == 0, err.decode(errors="replace")
    assert b"simulator.starting" in out and b"simulator.stopped" in out, out
    assert ESC not in out and ESC not in err, (out + err)[:2000]


async def test_logs_to_a_terminal_keep_their_colours() -> None:
    # The control: the same run on a terminal is coloured, so the test above can fail.
    master, slave = pty.openpty()
    try:
        proc = await _run_simulator(slave)
        os.close(slave)
        slave = -1
        _, err = await asyncio.wait_for(proc.communicate(), DEADLINE)
        assert proc.returncode == 0, err.decode(errors="replace")
        out = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert b"simulator.starting" in out, out
    assert ESC in out, out[:2000]

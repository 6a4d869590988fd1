"""A fresh `python -m api` process: what it says when it is ready, and what /metrics holds."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine import metrics
from tests.e2e.conftest import ROOT, free_port, process_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

# Starting the interpreter, migrating and binding take well under this.
DEADLINE = 60.0


async def _listening_line(proc: asyncio.subprocess.Process) -> dict[str, str]:
    """The first `web.listening` event the process logs (JSON lines on stderr)."""
    assert proc.stderr is not None
    while line := await proc.stderr.readline():
        event = json.loads(line)
        if event.get("event") == "web.listening":
            return dict(event)
    raise AssertionError(f"the web process exited ({await proc.wait()}) without listening")


async def _start_web(database_url: str, tmp_path: Path) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    (tmp_path / "metrics").mkdir()
    env = process_env(
        DATABASE_URL=database_url,
        ENGINE_WEB_PORT=str(port),
        ENGINE_DATA_DIR=str(tmp_path),
        # As `make run` has it: /metrics adds up every process's files.
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    proc = await asyncio.create_subprocess_exec(
        "python", "-m", "api", cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE
    )
    return proc, port


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        await asyncio.wait_for(proc.communicate(), DEADLINE)


async def test_counters_of_known_labels_are_at_zero_from_the_start(
    database_url: str, tmp_path: Path
) -> None:
    proc, port = await _start_web(database_url, tmp_path)
    try:
        await asyncio.wait_for(_listening_line(proc), DEADLINE)
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/metrics") as resp,
        ):
            assert resp.status == 200
            text = await resp.text()
    finally:
        await _stop(proc)
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    for counter, combinations in metrics.KNOWN_LABELS:
        for values in combinations:
            key = (
                f"{counter._name}_total",
                frozenset(zip(counter._labelnames, values, strict=True)),
            )
            assert samples.get(key) == 0.0, (key, samples.get(key))


async def test_the_web_process_says_where_it_listens_once_it_answers(
    database_url: str, tmp_path: Path
) -> None:
    proc, port = await _start_web(database_url, tmp_path)
    try:
        event = await asyncio.wait_for(_listening_line(proc), DEADLINE)
        assert event["url"] == f"http://127.0.0.1:{port}", event
        assert event["level"] == "info"
        # The line means ready: the very next request is served, no retry needed.
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{event['url']}/health") as resp,
        ):
            assert resp.status == 200, await resp.text()
    finally:
        await _stop(proc)

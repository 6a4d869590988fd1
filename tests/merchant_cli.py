"""Creating a merchant the way an operator does: `python -m engine.commands.merchants create`."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Migrating a fresh database and hashing one key take well under this.
CLI_DEADLINE = 60.0


async def create_merchant(
    env: dict[str, str],
    *,
    mid: str,
    name: str,
    mode: str = "test",
    webhook_url: str | None = None,
) -> dict[str, Any]:
    """Run the CLI with `env` (its DATABASE_URL names the database); returns the JSON it printed.

    stdout must be that JSON and nothing else: scripts pipe it.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engine.commands.merchants",
        "create",
        "--mid",
        mid,
        "--name",
        name,
        "--mode",
        mode,
        *(["--webhook-url", webhook_url] if webhook_url else []),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), CLI_DEADLINE)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode(errors="replace")
    created: dict[str, Any] = json.loads(out)
    assert created["mid"] == mid and created["name"] == name, created
    assert created["apiKey"].startswith(f"sk_{mode}_"), created
    return created


def bearer(key: str) -> dict[str, str]:
    """The Authorization header of an API key."""
    return {"Authorization": f"Bearer {key}"}


async def demo(env: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """Run `python -m engine.commands.merchants demo` as `make run` does; its output and file.

    `env` names the database (DATABASE_URL) and the data folder (ENGINE_DATA_DIR).
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engine.commands.merchants",
        "demo",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), CLI_DEADLINE)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode(errors="replace")
    saved: dict[str, Any] = json.loads(
        (Path(env["ENGINE_DATA_DIR"]) / "demo-merchant.json").read_text()
    )
    return out.decode(), saved

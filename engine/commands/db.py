"""`python -m engine.commands.db start|stop|url`: the embedded PostgreSQL for `make run`.

`start` starts it (unless DATABASE_URL is set) and applies the migrations; `stop` stops it and
keeps its data; `url` prints the URL every process will use.
"""

from __future__ import annotations

import asyncio
import sys

from config import settings as config_settings
from engine.store import db
from engine.store.devdb import database_url, stop


async def _migrate(url: str) -> list[str]:
    conn = await db.connect(url)
    try:
        return await db.migrate(conn)
    finally:
        await conn.close()


def main(argv: list[str]) -> int:
    """CLI: start (and migrate), stop, or print the URL."""
    command = argv[0] if argv else "url"
    settings = config_settings.load()
    if command == "stop":
        if settings.database_url:
            print("DATABASE_URL is set; nothing embedded to stop")
            return 0
        stop(settings)
        return 0
    url = database_url(settings)
    if command == "start":
        applied = asyncio.run(_migrate(url))
        where = (
            "DATABASE_URL" if settings.database_url else f"embedded, data in {settings.data_dir}"
        )
        print(f"PostgreSQL ready ({where}); migrations applied now: {len(applied)}")
        return 0
    if command == "url":
        print(url)
        return 0
    print("usage: python -m engine.commands.db start|stop|url", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

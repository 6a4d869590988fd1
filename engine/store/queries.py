"""Every SQL statement the engine runs, loaded by name from queries.sql and <store>.sql files."""

from __future__ import annotations

import functools
import re
from importlib import resources

_HEADER = re.compile(r"^-- ([a-z_]+) --$", re.MULTILINE)


def _parse(text: str) -> dict[str, str]:
    parts = _HEADER.split(text)
    # parts: [preamble, name1, body1, name2, body2, ...]
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = body.strip()
    return queries


@functools.cache
def load(name: str) -> dict[str, str]:
    """The named statements of engine/store/<name>.sql (read once per process)."""
    return _parse(resources.files("engine.store").joinpath(f"{name}.sql").read_text())


QUERIES: dict[str, str] = load("queries")

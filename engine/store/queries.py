"""Every SQL statement the engine runs, loaded by name from queries.sql."""

from __future__ import annotations

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


QUERIES: dict[str, str] = _parse(
    resources.files("engine.store").joinpath("queries.sql").read_text()
)


def load(name: str) -> dict[str, str]:
    """The named statements of engine/store/<name>.sql (one file per store)."""
    return _parse(resources.files("engine.store").joinpath(f"{name}.sql").read_text())

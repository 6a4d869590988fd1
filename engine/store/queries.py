"""Each store's SQL, loaded by name from engine/store/<store>.sql.

A file holds statements under `-- name --` headers; the comment lines under a header say what
the statement does and what its $1..$n are (they stay in the text sent to the server, which
ignores them).
"""

from __future__ import annotations

import functools
import re
from importlib import resources

_HEADER = re.compile(r"^-- ([a-z_]+) --$", re.MULTILINE)


def parse(text: str) -> dict[str, str]:
    """Statement name -> its text, for one file's `-- name --` sections."""
    parts = _HEADER.split(text)
    # parts: [preamble, name1, body1, name2, body2, ...]
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = body.strip()
    return queries


@functools.cache
def load(store: str) -> dict[str, str]:
    """The statements of engine/store/<store>.sql, read once per process."""
    return parse(resources.files("engine.store").joinpath(f"{store}.sql").read_text())


def leases(**names: str) -> dict[str, str]:
    """The statements payments and refunds share (leases.sql), with one queue's names filled
    in: table, processing, pending, unresolved, reference."""
    return {name: text.format(**names) for name, text in load("leases").items()}

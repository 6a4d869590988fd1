"""The lists pool's URL: the same hosts, target_session_attrs=prefer-standby."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from engine.store.db import prefer_standby


@pytest.mark.parametrize(
    ("dsn", "netloc", "kept"),
    [
        (
            "postgresql://u:p@h1:5440,h2:5441,h3:5442/db?target_session_attrs=read-write",
            "u:p@h1:5440,h2:5441,h3:5442",
            {},
        ),
        ("postgresql://postgres:@/engine?host=/tmp/pg", "postgres:@", {"host": ["/tmp/pg"]}),
        ("postgresql://u@db.example/pay?sslmode=require", "u@db.example", {"sslmode": ["require"]}),
    ],
)
def test_prefer_standby_keeps_the_hosts_and_replaces_the_target(
    dsn: str, netloc: str, kept: dict[str, list[str]]
) -> None:
    out = urlsplit(prefer_standby(dsn))
    assert out.netloc == netloc and out.scheme == "postgresql"
    query = parse_qs(out.query)
    assert query.pop("target_session_attrs") == ["prefer-standby"]
    assert query == kept

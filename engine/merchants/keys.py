"""API keys: unpredictable, unique, stored only as a keyed hash.

A secret key is `sk_live_` or `sk_test_` (a publishable key `pk_live_` or `pk_test_`: it may
only start and follow checkout sessions, so a browser may hold it) followed by 32 bytes from
the OS CSPRNG in Base62. It is shown once. The database keeps HMAC-SHA256(server secret,
key): fast enough to check on every request (a password hash is deliberately slow, and a
256-bit random key needs no stretching), and worthless to whoever steals the table without
the server secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from engine import ids

Mode = Literal["live", "test"]
Kind = Literal["secret", "publishable"]
_PREFIXES: dict[Kind, str] = {"secret": "sk", "publishable": "pk"}
_RANDOM_BYTES = 32
# Shown in lists so a person can tell keys apart: the mode and 6 characters of the key.
_PREFIX_CHARS = 6


def new_key(mode: Mode, kind: Kind = "secret") -> str:
    """A fresh key: sk_<mode>_ (pk_ for publishable) and 32 CSPRNG bytes in Base62 (43 chars)."""
    number = int.from_bytes(secrets.token_bytes(_RANDOM_BYTES), "big")
    return f"{_PREFIXES[kind]}_{mode}_{ids.base62(number, width=43)}"


def key_hash(secret: str, key: str) -> bytes:
    """HMAC-SHA256 of the key under the server secret: what the database stores."""
    return hmac.new(secret.encode(), key.encode(), hashlib.sha256).digest()


def display_prefix(key: str) -> str:
    """What lists show of a key, e.g. sk_live_AbC12x."""
    head, _, rest = key.rpartition("_")
    return f"{head}_{rest[:_PREFIX_CHARS]}"


def parse(key: str) -> tuple[Kind, Mode] | None:
    """The kind and mode of a well-formed key, or None: anything else is not worth a query."""
    for kind, prefix in _PREFIXES.items():
        for mode in ("live", "test"):
            rest = key.removeprefix(f"{prefix}_{mode}_")
            if rest != key and len(rest) == 43 and rest.isascii() and rest.isalnum():
                return kind, mode
    return None


def parse_key(key: str) -> Mode | None:
    """The mode of a well-formed secret key, or None."""
    parsed = parse(key)
    return parsed[1] if parsed is not None and parsed[0] == "secret" else None


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key just made: the only time the whole key is known."""

    id: int
    key: str
    mode: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    kind: str = "secret"

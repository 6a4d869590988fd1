"""Shapes of setting values, checked when the settings load and used by the engine as they are.

They live here, below the engine, because the settings validate with them and config imports
nothing above it: engine.signing, engine.egress and engine.money use (and re-export) these.
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import zoneinfo
from datetime import date

import babel.core
import babel.numbers

WEBHOOK_SECRET_PREFIX = "whsec_"
# The Standard Webhooks spec asks for 24 to 64 random bytes; fewer than 24 are refused.
MIN_WEBHOOK_SECRET_BYTES = 24


def webhook_secret_key(secret: str) -> bytes:
    """The HMAC key inside a `whsec_<base64>` secret; ValueError if it is not one."""
    prefix = WEBHOOK_SECRET_PREFIX
    if not secret.startswith(prefix):
        raise ValueError(f"a webhook secret starts with {prefix!r}")
    try:
        key = base64.b64decode(secret.removeprefix(prefix), validate=True)
    except binascii.Error as exc:
        raise ValueError("a webhook secret is whsec_ followed by base64") from exc
    if len(key) < MIN_WEBHOOK_SECRET_BYTES:
        raise ValueError(
            f"a webhook secret must hold at least {MIN_WEBHOOK_SECRET_BYTES} random bytes"
        )
    return key


@functools.lru_cache(maxsize=4096)
def normal_host(host: str) -> str:
    """Lower case, no brackets or trailing dot; an IP address in its canonical spelling.

    Remembered: the worker asks this for every webhook attempt, of the same few hosts.
    """
    host = host.strip().strip("[]").rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def allowed_hosts(text: str) -> frozenset[tuple[str, int]]:
    """Parse `host:port,host:port` (IPv6 as `[::1]:8082`); ValueError naming a bad entry."""
    found: set[tuple[str, int]] = set()
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        host, sep, port = entry.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{entry!r} is not host:port")
        if ":" in host and not (host.startswith("[") and host.endswith("]")):
            raise ValueError(f"{entry!r}: write an IPv6 address in brackets, [::1]:port")
        found.add((normal_host(host), int(port)))
    return frozenset(found)


@functools.cache
def _current_currencies() -> frozenset[str]:
    # territory -> [(code, start, end, tender)], CLDR's history of each territory's money.
    table = babel.core.get_global("territory_currencies")
    today = date.today()
    known = set(babel.numbers.list_currencies())
    return frozenset(
        code
        for entries in table.values()
        for code, _start, end, tender in entries
        if tender and code in known and (end is None or date(*end) > today)
    )


def currencies() -> frozenset[str]:
    """Every ISO 4217 code we accept: legal tender in some territory today (engine/money.py)."""
    return _current_currencies()


def is_currency(code: str) -> bool:
    """True if `code` is an ISO 4217 code of money in use today."""
    return code in _current_currencies()


def is_time_zone(name: str) -> bool:
    """True for an IANA time zone name this machine knows (Asia/Seoul, UTC)."""
    try:
        zoneinfo.ZoneInfo(name)
    except (ValueError, OSError, zoneinfo.ZoneInfoNotFoundError):
        return False
    return True

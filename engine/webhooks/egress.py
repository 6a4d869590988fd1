"""Where outbound webhook calls may go: one policy for every URL a merchant gives us.

A URL passes if its scheme is http or https (https only in production) and every address its
host resolves to is a public one, unless its `host:port` is on the operator's allow-list. The
webhook session connects through `Resolver`, which checks the addresses it hands the connector:
the connection goes to exactly the addresses checked, never to a second lookup's answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import ipaddress
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import aiohttp
import structlog
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult

from config import formats

if TYPE_CHECKING:
    from config.settings import Settings

log = structlog.get_logger()

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Ranges the ipaddress module does not name (or names only in newer Pythons).
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # the v4 address is the last 32 bits
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")

# Parse `host:port,host:port`; the settings check the same rule at load.
allowed_hosts = formats.allowed_hosts

# A resolution failure is a refusal at registration, but at delivery it may pass: retried.
TRANSIENT = frozenset({"dns_failed"})


class EgressRefused(Exception):
    """The policy refuses this destination; `reason` is a short code a merchant may see."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class Policy:
    """What outbound calls may reach: `allowed_hosts` are the only private destinations."""

    require_https: bool = False
    allowed_hosts: frozenset[tuple[str, int]] = frozenset()
    resolve_timeout: float = 5.0

    def allows(self, host: str, port: int) -> bool:
        """True if `host:port` (a name or an address) is on the allow-list."""
        return (formats.normal_host(host), port) in self.allowed_hosts


@dataclasses.dataclass(frozen=True)
class Destination:
    """A URL that passed the policy, and the addresses it was checked on."""

    url: str
    host: str
    port: int
    addresses: tuple[str, ...]
    allow_listed: bool


def policy_from(settings: Settings) -> Policy:
    """The policy the settings describe: https only in production, their allow-list."""
    return Policy(
        require_https=getattr(settings, "env", "development") == "production",
        allowed_hosts=formats.allowed_hosts(settings.webhook_allowed_hosts),
    )


def log_allow_list(policy: Policy) -> None:
    """Say at start which private destinations this process may call."""
    log.info(
        "egress.allow_list",
        hosts=sorted(f"{h}:{p}" for h, p in policy.allowed_hosts),
        require_https=policy.require_https,
    )


def _v4_refusal(a: ipaddress.IPv4Address) -> str | None:
    if a in _THIS_NETWORK:  # 0.0.0.0 reaches this host on Linux
        return "unspecified"
    if a.is_loopback:
        return "loopback"
    if a.is_link_local:  # 169.254.169.254: the cloud metadata service
        return "link_local"
    if a.is_multicast:
        return "multicast"
    if a in _CGNAT:
        return "cgnat"
    if a.is_reserved:
        return "reserved"
    if a.is_private:
        return "private"
    return None if a.is_global else "reserved"


def _embedded_v4(a: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside a mapped, 6to4, Teredo or NAT64 IPv6 address."""
    if a.ipv4_mapped is not None:
        return a.ipv4_mapped
    if a.sixtofour is not None:
        return a.sixtofour
    if a.teredo is not None:
        return a.teredo[1]  # the client, which the tunnel delivers to
    if a in _NAT64:
        return ipaddress.IPv4Address(int(a) & 0xFFFFFFFF)
    return None


def _v6_refusal(a: ipaddress.IPv6Address) -> str | None:
    inner = _embedded_v4(a)
    if inner is not None and (a.ipv4_mapped is not None or a in _NAT64):
        return _v4_refusal(inner)  # the connection goes to the IPv4 address: judge that
    if inner is not None and (reason := _v4_refusal(inner)) is not None:
        return reason  # a tunnel (6to4, Teredo) towards a private IPv4 address
    if a.is_unspecified:
        return "unspecified"
    if a.is_loopback:
        return "loopback"
    if a.is_link_local:
        return "link_local"
    if a.is_multicast:
        return "multicast"
    if a in _UNIQUE_LOCAL:
        return "unique_local"
    if a.is_site_local or a in _NAT64_LOCAL:
        return "private"
    if a.is_reserved:
        return "reserved"
    if a.is_private:
        return "private"
    return None if a.is_global else "reserved"


def refusal(address: str | IPAddress) -> str | None:
    """Why `address` may not be called (a reason code), or None for a public address."""
    a = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(a, ipaddress.IPv6Address):
        return _v6_refusal(a)
    return _v4_refusal(a)


def _check_addresses(policy: Policy, host: str, port: int, addresses: Iterable[str]) -> None:
    """Raise EgressRefused unless every address may be called (or host:port is allowed)."""
    if policy.allows(host, port):
        return
    for address in addresses:
        reason = refusal(address.split("%", 1)[0])  # an IPv6 zone is no part of the check
        if reason is not None and not policy.allows(address, port):
            raise EgressRefused(reason, f"{host}:{port} -> {address}")


async def _resolve(host: str, port: int, family: int, timeout: float) -> list[Any]:
    """getaddrinfo for a stream socket; EgressRefused('dns_failed') if the name has none."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError, ValueError) as exc:  # ValueError: a label IDNA refuses
        raise EgressRefused("dns_failed", f"{host}: {exc}") from exc
    if not infos:
        raise EgressRefused("dns_failed", f"{host}: no address")
    return infos


def _host_port(url: str, policy: Policy) -> tuple[str, int]:
    """The host and port of `url`, if its form passes `policy`; EgressRefused otherwise."""
    try:
        parsed = yarl.URL(url)
        host, port = parsed.raw_host, parsed.port
    except (ValueError, TypeError) as exc:
        raise EgressRefused("invalid_url", str(exc)) from exc
    if parsed.scheme not in ("http", "https"):
        raise EgressRefused("scheme", parsed.scheme)
    if policy.require_https and parsed.scheme != "https":
        raise EgressRefused("https_required", parsed.scheme)
    if not host or port is None:
        raise EgressRefused("invalid_url", "no host")
    return host, port


@functools.lru_cache(maxsize=4096)
def _address_verdict(url: str, policy: Policy) -> Destination | None:
    """The verdict on a url whose host is an address, or None if it names a host.

    An address needs no lookup, so its verdict cannot change and is remembered (the worker
    checks before every attempt). A refusal raises and is not remembered.
    """
    host, port = _host_port(url, policy)
    try:
        # An address in canonical spelling needs no lookup (and aiohttp does none for it).
        addresses = (str(ipaddress.ip_address(host.split("%", 1)[0])),)
    except ValueError:
        return None
    _check_addresses(policy, host, port, addresses)
    return Destination(url, host, port, addresses, policy.allows(host, port))


async def check_url(url: str, policy: Policy) -> Destination:
    """Check `url` against `policy`, resolving its host; EgressRefused(reason) if refused."""
    known = _address_verdict(url, policy)
    if known is not None:
        return known
    # A name, legacy spellings like 127.1 or 0x7f.0.0.1 included, is resolved the way the
    # socket layer would, every time (DNS answers change), and the answer checked.
    host, port = _host_port(url, policy)
    infos = await _resolve(host, port, socket.AF_UNSPEC, policy.resolve_timeout)
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    _check_addresses(policy, host, port, addresses)
    return Destination(url, host, port, addresses, policy.allows(host, port))


class Resolver(AbstractResolver):
    """aiohttp's name lookup, checked: the connector gets only addresses the policy allows.

    aiohttp connects to what `resolve` returns, so no lookup comes between check and connect;
    the Host header and TLS (SNI, certificate) still use the URL's name. Addresses in a URL
    never come here: `check_url` checks those before the request.
    """

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve `host`, refuse if any address is refused, return the checked addresses."""
        infos = await _resolve(host, port, family, self.policy.resolve_timeout)
        _check_addresses(self.policy, host, port, (str(i[4][0]) for i in infos))
        return [
            ResolveResult(
                hostname=host,
                host=str(sockaddr[0]),
                port=int(sockaddr[1]),
                family=fam,
                proto=proto,
                flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            )
            for fam, _type, proto, _name, sockaddr in infos
        ]

    async def close(self) -> None:
        """Nothing to release."""


def client_session(settings: Settings, policy: Policy | None = None) -> aiohttp.ClientSession:
    """The webhook HTTP session: checked lookups, its own pool and timeouts.

    Apart from the acquirer's session, so a merchant endpoint that holds connections open
    can use up only its own `webhook_connections_per_host`, never the acquirer's.
    """
    connector = aiohttp.TCPConnector(
        resolver=Resolver(policy or policy_from(settings)),
        # A fresh, checked lookup for every new connection: a cached answer would outlive a
        # DNS change the check should see.
        use_dns_cache=False,
        limit=settings.webhook_connections,
        limit_per_host=settings.webhook_connections_per_host,
        keepalive_timeout=30,
    )
    timeout = aiohttp.ClientTimeout(
        total=settings.webhook_timeout_seconds,
        sock_connect=settings.webhook_connect_timeout_seconds,
    )
    return aiohttp.ClientSession(connector=connector, timeout=timeout)

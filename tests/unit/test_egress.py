"""The egress policy on its own: every spelling of a private address, the allow-list, schemes,
the checked resolver, and the default retry schedule's span."""

from __future__ import annotations

import ipaddress
import socket
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from config.settings import Settings
from engine import backoff
from engine.webhooks import egress

OPEN = egress.Policy()

# Every spelling of this host's loopback address a URL can carry.
LOOPBACK_URLS = [
    "http://127.0.0.1/hook",
    "http://127.1/hook",
    "http://2130706433/hook",
    "http://0x7f.0.0.1/hook",
    "http://017700000001/hook",
    "http://127.255.255.254:8082/hook",
    "http://[::1]/hook",
    "http://[::ffff:7f00:1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://localhost/hook",
    "http://LOCALHOST:8082/hook",
    "https://127.0.0.1:8443/hook",
]


async def refused(url: str, policy: egress.Policy = OPEN) -> str:
    """The reason `policy` gives for refusing `url` (fails if it is allowed)."""
    with pytest.raises(egress.EgressRefused) as caught:
        await egress.check_url(url, policy)
    return caught.value.reason


@pytest.mark.parametrize("url", LOOPBACK_URLS)
async def test_every_loopback_spelling_is_refused(url: str) -> None:
    assert await refused(url) == "loopback"


@pytest.mark.parametrize("url", ["http://0.0.0.0/", "http://0/", "http://0.1.2.3/", "http://[::]/"])
async def test_the_unspecified_address_is_refused(url: str) -> None:
    # Linux connects 0.0.0.0 to this host.
    assert await refused(url) == "unspecified"


_TEREDO_LOOPBACK = ipaddress.IPv6Address(
    (0x2001 << 112) | (0x0A000001 << 64) | (0xFFFFFFFF ^ int(ipaddress.IPv4Address("127.0.0.1")))
)


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link_local"),  # the cloud metadata service
        ("100.64.0.1", "cgnat"),
        ("100.127.255.254", "cgnat"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("[fd00::1]", "unique_local"),
        ("[fc00::1]", "unique_local"),
        ("[fe80::1]", "link_local"),
        ("[ff02::1]", "multicast"),
        ("[::ffff:10.1.2.3]", "private"),
        ("[::ffff:169.254.169.254]", "link_local"),
        ("[2002:7f00:1::1]", "loopback"),  # 6to4 around 127.0.0.1
        ("[2002:a9fe:a9fe::1]", "link_local"),  # 6to4 around the metadata address
        ("[64:ff9b::a9fe:a9fe]", "link_local"),  # NAT64 of the metadata address
        ("[64:ff9b::7f00:1]", "loopback"),
        (f"[{_TEREDO_LOOPBACK}]", "loopback"),  # Teredo whose client is 127.0.0.1
    ],
)
async def test_private_and_special_addresses_are_refused(host: str, reason: str) -> None:
    assert await refused(f"http://{host}/hook") == reason


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
async def test_public_addresses_pass(address: str) -> None:
    assert egress.refusal(address) is None
    host = f"[{address}]" if ":" in address else address
    found = await egress.check_url(f"https://{host}/hook", OPEN)
    assert found.addresses == (str(ipaddress.ip_address(address)),)
    assert found.port == 443 and not found.allow_listed


@pytest.mark.parametrize(
    "url", ["ftp://8.8.8.8/x", "file:///etc/passwd", "gopher://8.8.8.8/", "ws://8.8.8.8/"]
)
async def test_only_http_and_https(url: str) -> None:
    assert await refused(url) == "scheme"


async def test_production_requires_https() -> None:
    strict = egress.Policy(require_https=True)
    assert await refused("http://8.8.8.8/hook", strict) == "https_required"
    assert (await egress.check_url("https://8.8.8.8/hook", strict)).addresses == ("8.8.8.8",)


async def test_a_name_that_does_not_resolve_is_refused() -> None:
    assert await refused("http://nothing-here.invalid/hook") == "dns_failed"


async def test_the_allow_list_admits_exactly_its_host_and_port() -> None:
    policy = egress.Policy(allowed_hosts=egress.allowed_hosts("127.0.0.1:8082,[::1]:9000"))
    for url in (
        "http://127.0.0.1:8082/api/webhook",
        "http://[::1]:9000/x",
        "http://[0:0::1]:9000/x",
    ):
        found = await egress.check_url(url, policy)
        assert found.allow_listed
    assert await refused("http://127.0.0.1:8083/api/webhook", policy) == "loopback"
    assert await refused("http://[::1]:8082/x", policy) == "loopback"
    assert await refused("http://10.0.0.1:8082/x", policy) == "private"


async def test_an_allowed_address_admits_the_names_that_resolve_to_it_only() -> None:
    infos = await _addresses("localhost")
    allowed = ",".join(f"[{a}]:8082" if ":" in a else f"{a}:8082" for a in infos)
    policy = egress.Policy(allowed_hosts=egress.allowed_hosts(allowed))
    assert (await egress.check_url("http://localhost:8082/x", policy)).addresses
    assert await refused("http://localhost:8083/x", policy) == "loopback"


async def _addresses(host: str) -> list[str]:
    import asyncio

    infos = await asyncio.get_running_loop().getaddrinfo(host, 80, type=socket.SOCK_STREAM)
    return sorted({str(i[4][0]) for i in infos})


def test_allow_list_parsing() -> None:
    assert egress.allowed_hosts("") == frozenset()
    assert egress.allowed_hosts(" 127.0.0.1:8082 , Sim.Example.:80,[0::1]:9") == {
        ("127.0.0.1", 8082),
        ("sim.example", 80),
        ("::1", 9),
    }
    for bad in ("127.0.0.1", "host:", ":80", "host:0", "host:65536", "host:http", "::1:80"):
        with pytest.raises(ValueError, match=r"host:port|brackets"):
            egress.allowed_hosts(bad)


def test_settings_refuse_a_bad_allow_list() -> None:
    with pytest.raises(ValidationError, match="webhook_allowed_hosts"):
        Settings(webhook_allowed_hosts="127.0.0.1")
    assert Settings().webhook_allowed_hosts == ""  # nothing private by default


def test_policy_from_settings() -> None:
    s = Settings(webhook_allowed_hosts="127.0.0.1:8082")
    policy = egress.policy_from(s)
    assert policy == egress.Policy(
        require_https=False, allowed_hosts=frozenset({("127.0.0.1", 8082)})
    )
    production = SimpleNamespace(env="production", webhook_allowed_hosts="")
    assert egress.policy_from(production).require_https  # type: ignore[arg-type]
    development = SimpleNamespace(env="development", webhook_allowed_hosts="")
    assert not egress.policy_from(development).require_https  # type: ignore[arg-type]


async def test_the_resolver_hands_over_only_checked_addresses() -> None:
    resolver = egress.Resolver(OPEN)
    with pytest.raises(egress.EgressRefused) as caught:
        await resolver.resolve("localhost", 8082)
    assert caught.value.reason == "loopback"
    allowed = egress.Resolver(egress.Policy(allowed_hosts=egress.allowed_hosts("localhost:8082")))
    results = await allowed.resolve("localhost", 8082, socket.AF_UNSPEC)
    assert results and {r["host"] for r in results} <= {"127.0.0.1", "::1"}
    assert all(r["hostname"] == "localhost" and r["port"] == 8082 for r in results)


def test_the_default_schedule_retries_for_three_days() -> None:
    s = Settings()
    schedule = backoff.Backoff(s.webhook_backoff_initial_seconds, s.webhook_backoff_max_seconds)
    # A delay follows each failed attempt but the last, after which the delivery is DEAD.
    delays = [schedule.delay(n) for n in range(1, s.webhook_max_attempts)]
    assert sum(delays) >= 3 * 24 * 3600
    assert delays[0] <= 2 * 60  # a blip is retried within a couple of minutes
    assert max(delays) <= s.webhook_backoff_max_seconds == 12 * 3600

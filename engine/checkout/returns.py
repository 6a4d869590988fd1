"""Where a provider's hosted page sends the customer back, and where it calls us back.

The return URL names the payment's mode and tid and carries a MAC over both (keyed from the
server's api_key_secret), so the return page shows a payment only to a browser that came back
from its provider: a guessed or altered tid, or the other mode, is not found.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import quote

CALLBACK_PATH = "/api/providers/atom/callback"
RETURN_PREFIX = "/app/return"


def _mac(secret: str, mode: str, tid: str) -> str:
    key = hmac.new(secret.encode(), b"checkout-return", hashlib.sha256).digest()
    digest = hmac.new(key, f"{mode}\0{tid}".encode(), hashlib.sha256).digest()[:18]
    return base64.urlsafe_b64encode(digest).decode()


def return_url(public_url: str, secret: str, mode: str, tid: str) -> str:
    """The page the provider sends the customer back to for payment `tid` of `mode`."""
    base = public_url.rstrip("/")
    return f"{base}{RETURN_PREFIX}/{mode}/{quote(tid, safe='')}?sig={_mac(secret, mode, tid)}"


def callback_url(public_url: str) -> str:
    """Where Atom POSTs its signed, encrypted callbacks."""
    return f"{public_url.rstrip('/')}{CALLBACK_PATH}"


def verified(secret: str, mode: str, tid: str, sig: str) -> bool:
    """True when `sig` is the MAC return_url gave this mode and tid."""
    return hmac.compare_digest(_mac(secret, mode, tid).encode(), sig.encode())

"""Customers' passwords: Argon2id (argon2-cffi's defaults, RFC 9106's second choice).

The same interface as the back office's engine.accounts.passwords (hash, verify), so the two
can become one module.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher()


def hash(password: str) -> str:
    """The encoded Argon2id hash of `password` (parameters and salt included)."""
    return _HASHER.hash(password)


def verify(hashed: str, password: str) -> bool:
    """Whether `password` matches; False for a malformed hash, never an exception."""
    try:
        return _HASHER.verify(hashed, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(hashed: str) -> bool:
    """Whether the hash was made with older parameters than today's."""
    return _HASHER.check_needs_rehash(hashed)

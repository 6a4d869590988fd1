"""Passwords, the back office's users' and the customers': Argon2id in its PHC string form,
hashed and checked off the event loop.

The strong profile is argon2-cffi's default (RFC 9106's second recommendation: 64 MiB, 3
passes, 4 lanes). The fast profile exists so the test suite can log in hundreds of times;
production refuses it (config/settings.production_problems). A PHC string carries its own
parameters, so a hash made under either profile (or an older default) verifies under both;
`Checker.needs_rehash` says when one falls short of today's profile.
"""

from __future__ import annotations

import asyncio
import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 12
# Longer inputs are refused before hashing: nobody types more, and hashing megabytes is work.
MAX_LENGTH = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def hasher(profile: str = "strong") -> PasswordHasher:
    """The hasher of a settings profile: "strong", or "fast" (tests only)."""
    if profile == "fast":
        return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    return PasswordHasher()


def problem(password: str) -> str | None:
    """Why `password` may not be chosen, or None."""
    if len(password) < MIN_LENGTH:
        return f"must be at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters"
    if _CONTROL.search(password):
        return "must not contain control characters"
    return None


async def hash_password(ph: PasswordHasher, password: str) -> str:
    """The PHC string to store."""
    return await asyncio.to_thread(ph.hash, password)


class Checker:
    """Checks passwords, spending the same work when the account does not exist."""

    def __init__(self, ph: PasswordHasher) -> None:
        self.ph = ph
        # Verified against when the email is unknown, so timing does not tell accounts apart
        # (made on first use: a process that nobody logs in to never spends the work).
        self._decoy: str | None = None

    def _verify(self, stored: str | None, password: str) -> bool:
        if stored is None and self._decoy is None:
            self._decoy = self.ph.hash("decoy password that matches nothing typed")
        try:
            return (
                bool(self.ph.verify(stored or self._decoy or "", password)) and stored is not None
            )
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def verify(self, stored: str | None, password: str) -> bool:
        """True when `password` matches `stored` (None: no such account, always False)."""
        if len(password) > MAX_LENGTH:
            return False
        return await asyncio.to_thread(self._verify, stored, password)

    def needs_rehash(self, stored: str) -> bool:
        """Whether `stored` was made with other parameters than this checker's hasher."""
        try:
            return self.ph.check_needs_rehash(stored)
        except InvalidHashError:
            return True

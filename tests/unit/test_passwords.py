"""One Argon2 helper for the back office's users and the customers: hashes stay verifiable."""

from __future__ import annotations

from argon2 import PasswordHasher

from engine import passwords

PASSWORD = "correct horse battery"


async def test_a_hash_verifies_under_either_profile_and_says_when_to_rehash() -> None:
    fast, strong = (
        passwords.Checker(passwords.hasher("fast")),
        passwords.Checker(passwords.hasher()),
    )
    made_fast = await passwords.hash_password(fast.ph, PASSWORD)
    # What both modules stored before they were one: argon2-cffi's defaults, as PHC strings.
    made_before = PasswordHasher().hash(PASSWORD)
    for checker in (fast, strong):
        assert await checker.verify(made_fast, PASSWORD)
        assert await checker.verify(made_before, PASSWORD)
        assert not await checker.verify(made_before, PASSWORD + "!")
    assert strong.needs_rehash(made_fast) and not strong.needs_rehash(made_before)
    assert fast.needs_rehash(made_before) and not fast.needs_rehash(made_fast)


async def test_no_account_or_a_broken_hash_never_matches() -> None:
    checker = passwords.Checker(passwords.hasher("fast"))
    assert not await checker.verify(None, PASSWORD)
    assert not await checker.verify("not a hash", PASSWORD)
    assert checker.needs_rehash("not a hash")
    made = await passwords.hash_password(checker.ph, PASSWORD)
    assert not await checker.verify(made, "x" * (passwords.MAX_LENGTH + 1))

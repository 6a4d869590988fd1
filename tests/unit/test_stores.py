"""Every store method a caller can reach turns a lost connection into DatabaseUnavailable."""

from __future__ import annotations

import inspect

import pytest

from engine.store import payments, queries, refunds
from engine.store.base import Store
from engine.store.repository import Repository

NAMES = ["payments", "refunds", "deliveries", "endpoints", "merchants", "history", "ops"]


def test_the_repository_holds_one_store_per_aggregate() -> None:
    repo = Repository(None)  # type: ignore[arg-type]
    assert all(isinstance(getattr(repo, name), Store) for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_public_coroutine_is_translated(name: str) -> None:
    store = type(getattr(Repository(None), name))  # type: ignore[arg-type]
    public = [
        (attr, fn)
        for attr, fn in vars(store).items()
        if not attr.startswith("_") and inspect.iscoroutinefunction(fn)
    ]
    assert public
    untranslated = [attr for attr, fn in public if not hasattr(fn, "__wrapped__")]
    assert untranslated == []


@pytest.mark.parametrize("name", NAMES)
def test_each_store_has_its_sql(name: str) -> None:
    assert queries.load(name)


def test_a_statement_named_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        queries.parse("-- a --\nSELECT 1;\n-- a --\nSELECT 2;\n")


def test_the_shared_lease_statements_are_filled_in_for_each_queue() -> None:
    for filled in (payments.LEASES, refunds.LEASES):
        assert set(filled) == {"requeue", "reap_expired"}
        assert not any("{" in text or "}" in text for text in filled.values())
    assert "UPDATE refunds q" in refunds.LEASES["reap_expired"]
    assert "'REFUND_PENDING'" in refunds.LEASES["reap_expired"]

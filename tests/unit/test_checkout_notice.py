"""The checkout notice's payload (migration 0020): what a web process's streams act on."""

from __future__ import annotations

import pytest

from engine.checkout.sessions import is_final_state
from engine.store.checkout import Notice


def test_a_known_state_round_trips() -> None:
    sent = Notice.of("cs_abc", 4, "confirmed", "SUCCESS")
    assert sent.text() == "cs_abc 4 confirmed SUCCESS"
    assert Notice.parse(sent.text()) == sent
    none = Notice.of("cs_abc", 2, "canceled", None)
    assert none.text() == "cs_abc 2 canceled -"
    assert Notice.parse(none.text()) == none


@pytest.mark.parametrize("payload", ["cs_abc 3", "cs_abc 3 confirmed ?"])
def test_a_notice_that_does_not_say_its_state_is_not_known(payload: str) -> None:
    notice = Notice.parse(payload)
    assert notice is not None and notice.version == 3 and not notice.known


@pytest.mark.parametrize(
    "payload", ["", "cs_abc", "cs_abc x", "cs_abc -1 open -", "cs_abc 12345678901 open -", " "]
)
def test_anything_else_is_no_notice(payload: str) -> None:
    assert Notice.parse(payload) is None


@pytest.mark.parametrize(
    ("status", "payment", "final"),
    [
        ("open", None, False),
        ("scanned", None, False),
        ("canceled", None, True),
        ("expired", None, True),
        ("confirmed", "PENDING", False),
        ("confirmed", "PROCESSING", False),
        ("confirmed", "REQUIRES_ACTION", False),
        ("confirmed", "UNRESOLVED", False),
        ("confirmed", "SUCCESS", True),
        ("confirmed", "FAILED", True),
        ("confirmed", None, False),
    ],
)
def test_final_states(status: str, payment: str | None, final: bool) -> None:
    assert is_final_state(status, payment) is final

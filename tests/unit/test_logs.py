"""The log processor that escapes control characters: its shortcut for clean lines."""

from __future__ import annotations

from typing import Any

from engine import logs


def test_a_clean_line_passes_as_it_is() -> None:
    event: dict[str, Any] = {"event": "payment.settled", "tid": "T1", "attempt": 2, "x": None}
    assert logs.escape_controls(None, "info", event) is event
    assert event == {"event": "payment.settled", "tid": "T1", "attempt": 2, "x": None}


def test_a_control_character_in_any_string_or_nested_value_is_escaped() -> None:
    cases: list[tuple[dict[Any, Any], dict[Any, Any]]] = [
        ({"event": "e", "tid": "T\n1"}, {"event": "e", "tid": "T\\n1"}),
        ({"event": "e", "k\x1bey": 1}, {"event": "e", "k\\x1bey": 1}),
        ({"event": "e\x85", "n": 1.5}, {"event": "e\\x85", "n": 1.5}),
        ({"event": "e", "d": {"a\r": ["b\x00"]}}, {"event": "e", "d": {"a\\r": ["b\\x00"]}}),
        ({"event": "e", "a": "x\x7f", "b": "y"}, {"event": "e", "a": "x\\x7f", "b": "y"}),
    ]
    for event, escaped in cases:
        assert logs.escape_controls(None, "info", dict(event)) == escaped

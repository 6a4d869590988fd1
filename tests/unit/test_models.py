"""api.models: the strict request model and the strict JSON parser, without HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from api import models
from api.models import MAX_ECHO_DEPTH, PaymentRequest, parse_json
from api.problems import Problem

SEED: dict[str, Any] = {
    "userPublicId": "USR_123",
    "orderId": "ORD_456",
    "amount": 10000,
    "echo": {
        "mid": "hamster_dummy_mid_001",
        "orderNumber": "TEST_ORDER",
        "gatewayReferenceId": "CGW_REF_123",
    },
}


def request(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(json.dumps(SEED))
    for key, value in changes.items():
        if value is ...:
            body.pop(key)
        else:
            body[key] = value
    return body


def validate(data: Any, max_amount: int | None = 1_000_000) -> PaymentRequest:
    context = {"max_amount": max_amount} if max_amount is not None else None
    return PaymentRequest.model_validate(data, context=context)


def failing_fields(data: Any, max_amount: int | None = 1_000_000) -> list[tuple[Any, ...]]:
    with pytest.raises(ValidationError) as info:
        validate(data, max_amount)
    return [e["loc"] for e in info.value.errors()]


def nested(levels: int, leaf: Any = None) -> Any:
    """An object `levels` objects deep (itself included); the innermost holds `leaf` or is {}."""
    value: Any = {} if leaf is None else {"leaf": leaf}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


# --- PaymentRequest -------------------------------------------------------------------------


def test_seed_request_is_valid() -> None:
    req = validate(request())
    assert req.user_public_id == "USR_123"
    assert req.order_id == "ORD_456"
    assert req.amount == 10000 and type(req.amount) is int
    assert req.currency is None and req.webhook_url is None
    assert req.echo == SEED["echo"]
    assert list(req.echo) == ["mid", "orderNumber", "gatewayReferenceId"]
    # echo.mid is only checked against the API key's merchant; the model keeps it in echo.
    assert req.echo["mid"] == "hamster_dummy_mid_001"
    assert req.provider == "card" and req.order_name is None
    # An unknown top-level member is refused, not ignored ("curency" must not charge KRW).
    with pytest.raises(ValidationError) as refused:
        validate(request(extraTopLevel="ignored"))
    assert refused.value.errors()[0]["loc"] == ("extraTopLevel",)


def test_defaults_when_echo_has_no_mid() -> None:
    req = validate(request(echo=...))
    assert req.echo == {}
    assert validate(request(echo={"mid": None})).echo == {"mid": None}
    assert validate(request(echo={"other": 1})).echo == {"other": 1}
    # The merchant comes from the API key: the model has no mid of its own any more.
    assert "mid" not in PaymentRequest.model_fields


def test_model_is_frozen() -> None:
    req = validate(request())
    with pytest.raises(ValidationError):
        req.amount = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", "10000"),
        ("amount", 10000.0),
        ("amount", True),
        ("amount", False),
        ("amount", None),
        ("amount", [1]),
        ("amount", 0),
        ("amount", -1),
        ("orderId", 456),
        ("orderId", None),
        ("orderId", ""),
        ("orderId", "x" * 65),
        ("orderId", b"ORD"),
        ("userPublicId", 123),
        ("userPublicId", ""),
        ("echo", [1]),
        ("echo", "x"),
        ("echo", None),
        ("currency", "krw"),
        ("currency", "KRWX"),
        ("currency", "KR"),
        ("currency", 410),
        ("webhookUrl", "ftp://x"),
        ("webhookUrl", "not a url"),
        ("webhookUrl", "/relative"),
        ("webhookUrl", "http://" + "a" * 2048),
        ("webhookUrl", 80),
        ("provider", "paypal"),
        ("provider", "CARD"),
        ("provider", None),
        ("provider", 1),
        ("orderName", ""),
        ("orderName", "n" * 201),
        ("orderName", 7),
        ("orderName", "a\x00"),
    ],
)
def test_strict_types_and_bounds(field: str, value: Any) -> None:
    assert failing_fields(request(**{field: value})) == [(field,)]


@pytest.mark.parametrize("field", ["userPublicId", "orderId", "amount"])
def test_required_fields(field: str) -> None:
    assert failing_fields(request(**{field: ...})) == [(field,)]


def test_every_failure_is_reported() -> None:
    locs = failing_fields({"amount": "1", "currency": "x"})
    assert set(locs) == {("userPublicId",), ("orderId",), ("amount",), ("currency",)}


def test_boundaries_that_pass() -> None:
    assert validate(request(orderId="x" * 64, userPublicId="u" * 64)).order_id == "x" * 64
    assert validate(request(amount=1)).amount == 1
    assert validate(request(currency="USD")).currency == "USD"
    assert validate(request(webhookUrl="https://m.example/hook?a=1")).webhook_url == (
        "https://m.example/hook?a=1"
    )
    assert validate(request(echo={"mid": "m" * 64})).echo["mid"] == "m" * 64
    assert validate(request(provider="atom")).provider == "atom"
    assert validate(request(provider="card")).provider == "card"
    assert validate(request(orderName="n")).order_name == "n"
    assert validate(request(orderName="주" * 200)).order_name == "주" * 200


def test_max_amount_comes_from_context() -> None:
    assert validate(request(amount=1_000_000), max_amount=1_000_000).amount == 1_000_000
    assert failing_fields(request(amount=1_000_001), max_amount=1_000_000) == [("amount",)]
    assert failing_fields(request(amount=2), max_amount=1) == [("amount",)]
    assert failing_fields(request(amount=2**70), max_amount=2**62) == [("amount",)]
    # Without a context there is no configured limit to apply.
    assert validate(request(amount=10**15), max_amount=None).amount == 10**15


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("orderId", "ORD\x00"),
        ("userPublicId", "\x00"),
        ("webhookUrl", "http://h/\x00"),
        ("echo", {"note": "a\x00b"}),
        ("echo", {"k\x00": 1}),
        ("echo", {"l": ["\x00"]}),
        ("echo", {"mid": "m\x00"}),
    ],
)
def test_nul_is_refused(field: str, value: Any) -> None:
    assert failing_fields(request(**{field: value})) == [(field,)]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("orderId", "O\ud800"),
        ("userPublicId", "\udfff"),
        ("webhookUrl", "http://h/\ud800"),
        ("echo", {"x": "\ud800"}),
        ("echo", {"\udc00": 1}),
        ("echo", {"a": [{"b": "\ud83d"}]}),
    ],
)
def test_lone_surrogate_is_refused(field: str, value: Any) -> None:
    assert failing_fields(request(**{field: value})) == [(field,)]


def test_surrogate_pair_written_as_escapes_is_fine() -> None:
    data = parse_json(b'{"userPublicId":"U","orderId":"\\ud83d\\udc39","amount":1}')
    assert validate(data).order_id == "\U0001f439"


def test_echo_depth_limit() -> None:
    assert MAX_ECHO_DEPTH == 32
    assert validate(request(echo=nested(MAX_ECHO_DEPTH))).echo == nested(MAX_ECHO_DEPTH)
    assert failing_fields(request(echo=nested(MAX_ECHO_DEPTH + 1))) == [("echo",)]
    assert failing_fields(request(echo=nested(500))) == [("echo",)]
    # Lists count as levels too.
    deep_list: Any = []
    for _ in range(MAX_ECHO_DEPTH + 1):
        deep_list = [deep_list]
    assert failing_fields(request(echo={"l": deep_list})) == [("echo",)]


@pytest.mark.parametrize("mid", [1, 1.5, True, {"id": "m"}, ["m"], "", "m" * 65])
def test_echo_mid_must_be_a_short_string(mid: Any) -> None:
    assert failing_fields(request(echo={"mid": mid})) == [("echo",)]


def test_digest_fields_carry_the_resolved_values() -> None:
    req = validate(request())
    assert req.digest_fields("KRW", "http://h/hook") == {
        "userPublicId": "USR_123",
        "orderId": "ORD_456",
        "amount": 10000,
        "currency": "KRW",
        "echo": SEED["echo"],
        "webhookUrl": "http://h/hook",
        "provider": "card",
        "orderName": None,
    }
    # The provider and the order name are part of what makes a request the same one.
    other = validate(request(provider="atom", orderName="Coffee")).digest_fields("KRW", "http://h")
    assert (other["provider"], other["orderName"]) == ("atom", "Coffee")
    plain = req.digest_fields("KRW", "http://h")
    assert other | {"provider": "card", "orderName": None} == plain


# --- parse_json -----------------------------------------------------------------------------


def test_parse_json_keeps_values_and_order() -> None:
    raw = '{"b":1,"a":{"z":[1,2.5,"둘",null,true],"y":12345678901234567890123}}'
    data = parse_json(raw.encode())
    assert data == {"b": 1, "a": {"z": [1, 2.5, "둘", None, True], "y": 12345678901234567890123}}
    assert list(data) == ["b", "a"] and list(data["a"]) == ["z", "y"]
    assert parse_json(b"[1,2]") == [1, 2]
    assert parse_json(b" 7 ") == 7


BAD_JSON: dict[str, bytes] = {
    "duplicate-top": b'{"amount":1,"amount":2,"userPublicId":"U","orderId":"O"}',
    "duplicate-nested": b'{"echo":{"mid":"a","mid":"b"}}',
    "duplicate-in-list": b'[{"k":1},{"k":1,"k":1}]',
    "nan": b'{"amount":NaN}',
    "infinity": b'{"amount":Infinity}',
    "neg-infinity": b'{"amount":-Infinity}',
    "not-utf8": b'{"orderId":"\xff\xfe"}',
    "latin1": '{"orderId":"Jos\u00e9"}'.encode("latin-1"),
    "utf16": '{"orderId":"O"}'.encode("utf-16"),
    "truncated": b'{"orderId":"O","amount":1',
    "empty": b"",
    "whitespace": b"  \n ",
    "trailing": b'{"a":1}{"b":2}',
    "single-quotes": b"{'a':1}",
    "huge-int": b'{"a":' + b"9" * 5000 + b"}",
    "deep-array": b"[" * 100_000,
    "deep-object": b'{"a":' * 100_000,
    "deep-closed": b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("raw", BAD_JSON.values(), ids=BAD_JSON.keys())
def test_parse_json_refuses_with_400(raw: bytes) -> None:
    with pytest.raises(Problem) as info:
        parse_json(raw)
    problem = info.value
    assert problem.status == 400
    assert problem.field == "body"
    assert problem.slug == "malformed-json"
    assert problem.detail
    response = problem.response("/api/payment")
    assert response.status == 400
    assert response.content_type == "application/problem+json"


def test_parse_json_names_the_duplicate_key() -> None:
    with pytest.raises(Problem) as info:
        parse_json(b'{"amount":1,"amount":2}')
    assert "amount" in info.value.detail


def test_parse_json_nesting_detail() -> None:
    with pytest.raises(Problem) as info:
        parse_json(b"[" * 100_000)
    assert "nested" in info.value.detail


def test_surrogate_escape_parses_then_fails_validation() -> None:
    # The JSON text is valid (an escape), so parsing succeeds; the model refuses the value.
    data = parse_json(b'{"userPublicId":"U","orderId":"O","amount":1,"echo":{"x":"\\ud800"}}')
    assert data["echo"]["x"] == "\ud800"
    assert failing_fields(data) == [("echo",)]


def test_check_text_and_check_json_directly() -> None:
    assert models._check_text("평범한 text") == "평범한 text"
    with pytest.raises(ValueError):
        models._check_text("\x00")
    with pytest.raises(ValueError):
        models._check_text("\ud800")
    models._check_json({"a": [1, "b", {"c": None}]})
    with pytest.raises(ValueError):
        models._check_json({"a": ["\x00"]})

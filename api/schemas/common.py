"""What every response body shares: closed members, timestamps as the seed writes them, ids."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, PlainSerializer, WithJsonSchema
from pydantic.alias_generators import to_camel

# The largest id and `after` cursor: PostgreSQL bigint.
MAX_BIGINT = 2**63 - 1
# Shape of a tid; anything else cannot exist, so it is answered 404 without a query.
TID_PATTERN = r"^[A-Z0-9]{1,16}_[0-9]{8}_[0-9]{8}$"
TID = re.compile(TID_PATTERN)
Mode = Literal["live", "test"]


def _iso(ts: datetime) -> str:
    return ts.isoformat()


# ISO 8601 with its offset as Python writes it ("+00:00"), as the seed's bodies have it;
# pydantic's own JSON would write "Z".
Instant = Annotated[
    datetime,
    PlainSerializer(_iso, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class Request(BaseModel):
    """A request body, strict: an amount must be a JSON integer, not a string or a float.

    An unknown member is refused, not ignored: a misspelt "curency" must not charge KRW.
    """

    model_config = ConfigDict(strict=True, extra="forbid")


class Response(BaseModel):
    """A response body: exactly these members, so the document notices when a handler drifts.

    Members are named as the engine's rows name them and written camelCase on the wire (an
    explicit alias where the wire's name differs), so a body is read off its row by `of`.
    """

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, validate_by_name=True, from_attributes=True
    )

    @classmethod
    def of(cls, row: object, **more: object) -> Self:
        """The body of the engine's `row` (its attributes by member name), with `more`."""
        if not more:
            return cls.model_validate(row, from_attributes=True)
        members = {name: getattr(row, name) for name in cls.model_fields if name not in more}
        return cls.model_validate(members | more)


# C0 controls, DEL and C1 controls: none belongs in an id, a name or a reason, and each can
# forge or repaint a line wherever the text is shown (a log, a terminal, a back office).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def check_text(value: str) -> str:
    """A free-text field: storable (see _check_text) and without control characters."""
    _check_text(value)
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters (tab, newline, ESC, ...)")
    return value


def _check_text(value: str) -> str:
    # PostgreSQL text cannot hold NUL, and lone surrogates cannot be stored as UTF-8.
    if "\x00" in value:
        raise ValueError("must not contain the NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value

"""Provider callback bodies: what Atom posts, and what it is answered."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import Response


class AtomCallback(BaseModel):
    """POST /api/providers/atom/callback: Atom's encrypted, signed answer, hex-encoded."""

    # Members besides encData are Atom's business; they are not refused.
    model_config = ConfigDict(extra="allow")

    encData: str = Field(min_length=1)


class AtomCallbackResult(Response):
    """200 of a verified callback: the payment is (now) in the state it names."""

    tid: str
    status: str
    settled: bool
    # True when the callback came after the payment had ended the other way (a payment we
    # expired that Atom charged): recorded and flagged for a person, never applied.
    flagged: bool = False

"""The body of every error answer: an RFC 9457 problem (api/problems.py makes them)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

# Why a 401 was answered, in its `reason` member (api/auth.py).
AuthFailure = Literal["missing", "malformed", "unknown", "expired", "revoked"]
# Why a webhook destination was refused (engine/webhooks/egress.py), in a destination-refused
# 422's `reason` member.
EgressReason = Literal[
    "invalid_url",
    "scheme",
    "https_required",
    "dns_failed",
    "unspecified",
    "loopback",
    "link_local",
    "multicast",
    "cgnat",
    "reserved",
    "private",
    "unique_local",
]


class FieldError(BaseModel):
    """One failing input of a 422."""

    model_config = ConfigDict(extra="forbid")

    field: str
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem; members other than these are extensions."""

    # RFC 9457 lets a problem type add members; ours are listed, others are not refused.
    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    # Absent, never null, when they do not apply: SkipJsonSchema keeps null out of the schema,
    # and the answer leaves out what was not set.
    instance: str | SkipJsonSchema[None] = None
    field: str | SkipJsonSchema[None] = Field(default=None, description="The offending input.")
    errors: list[FieldError] | SkipJsonSchema[None] = Field(
        default=None, description="422: every failing input."
    )
    transactionId: str | SkipJsonSchema[None] = Field(
        default=None, description="409 idempotency-conflict: the payment already made."
    )
    currentStatus: str | SkipJsonSchema[None] = Field(
        default=None, description="409 state-conflict: the payment's status now."
    )
    refundable: Annotated[int, Field(ge=0)] | SkipJsonSchema[None] = Field(
        default=None, description="409 refund-exceeds-captured: what is left to refund."
    )
    limit: Annotated[int, Field(ge=1)] | SkipJsonSchema[None] = Field(
        default=None, description="409 limit-reached: how many active ones there may be."
    )
    reason: Literal[AuthFailure, EgressReason] | SkipJsonSchema[None] = Field(
        default=None,
        description="401: why the API key was not accepted. 422 destination-refused: why the"
        " url's destination is refused.",
    )

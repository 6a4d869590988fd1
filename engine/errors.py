"""The engine's own errors. Each carries data; the API maps them to HTTP in one place."""

from __future__ import annotations


class PaymentError(Exception):
    """A payment request could not be carried out."""

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or (self.__doc__ or "").strip())
        self.detail = detail or (self.__doc__ or "").strip()


class IdempotencyConflict(PaymentError):
    """This idempotency key was already used for this merchant with a different request."""

    def __init__(self, key: str, tid: str, *, field: str = "orderId") -> None:
        super().__init__(f"{field} {key!r} was already used with a different request (tid {tid})")
        self.order_id = key
        self.tid = tid
        self.field = field


class RefundExceedsCaptured(PaymentError):
    """The refund would take the payment's refunds above what was captured."""

    def __init__(self, tid: str, amount: int, refundable: int) -> None:
        super().__init__(
            f"refund of {amount} exceeds what is left to refund on {tid} ({refundable})"
        )
        self.tid = tid
        self.amount = amount
        self.refundable = refundable


class PaymentNotFound(PaymentError):
    """No payment has this transaction id."""

    def __init__(self, tid: str) -> None:
        super().__init__(f"no payment with transactionId {tid!r}")
        self.tid = tid


class StateConflict(PaymentError):
    """The payment is in a state that does not allow this."""

    def __init__(self, tid: str, current: str, detail: str) -> None:
        super().__init__(detail)
        self.tid = tid
        self.current = current


class Forbidden(PaymentError):
    """This key may not do that."""


class DeliveryNotFound(PaymentError):
    """No DEAD webhook delivery has this id."""

    def __init__(self, delivery_id: int) -> None:
        super().__init__(f"no DEAD webhook delivery with id {delivery_id}")
        self.delivery_id = delivery_id


class MerchantNotFound(PaymentError):
    """No merchant has this mid."""

    def __init__(self, mid: str) -> None:
        super().__init__(f"no merchant with mid {mid!r}")
        self.mid = mid


class EndpointExists(PaymentError):
    """This merchant has this url registered already, in this mode."""

    def __init__(self, url: str) -> None:
        super().__init__(f"{url!r} is registered already; roll its secret instead")
        self.url = url


class EndpointNotFound(PaymentError):
    """No active webhook endpoint of this merchant has this id."""

    def __init__(self, endpoint_id: int | str) -> None:
        super().__init__(f"no webhook endpoint {endpoint_id}")
        self.endpoint_id = endpoint_id


class UnknownWebhookUrl(PaymentError):
    """A payment named a webhookUrl that is not one of the merchant's registered endpoints."""

    def __init__(self, url: str) -> None:
        super().__init__(
            f"webhookUrl {url!r} is not one of your registered webhook endpoints in this mode; "
            "register it with POST /api/webhook-endpoints first"
        )
        self.url = url


class TooMany(PaymentError):
    """The merchant has as many of these as it may have."""

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(f"at most {limit} active {what} per merchant and mode; remove one first")
        self.what = what
        self.limit = limit


class ResendLimited(PaymentError):
    """This payment's webhook was queued too often recently."""

    def __init__(self, tid: str, window: float) -> None:
        super().__init__(f"the webhook of {tid} was sent too often recently; try again later")
        self.tid = tid
        self.retry_after = max(1, int(window))


class DatabaseUnavailable(PaymentError):
    """The database cannot be reached right now; try again shortly."""


class AcquirerUnavailable(Exception):
    """The acquirer did not answer usably (timeout, connection error, 5xx); retry later."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WebhookRetryable(Exception):
    """A webhook attempt failed; retried unless `final` (then the delivery is DEAD at once)."""

    def __init__(self, status: int | None, error: str, *, final: bool = False) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.final = final


class InvalidField(PaymentError):
    """A value given to the engine is out of its range; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class OperatorActionRefused(PaymentError):
    """An operator's action does not apply to the object in its current state."""

    def __init__(self, target: str, detail: str) -> None:
        super().__init__(detail)
        self.target = target

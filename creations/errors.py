"""Named errors of the domain, each carrying a machine-readable code and whether a retry may help."""
from __future__ import annotations


class CreationsError(Exception):
    """Base of every domain error. `code` is stable and machine-readable."""

    code = "INTERNAL"
    retryable = False

    def __init__(self, message: str, *, code: str | None = None, retryable: bool | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable


class InvalidOptions(CreationsError):
    """A creation request that Imagen/Veo would refuse. `fields` maps field name -> message."""

    code = "INVALID_REQUEST"

    def __init__(self, message: str, fields: dict[str, str] | None = None):
        super().__init__(message)
        self.fields = fields or {}


class InsufficientTokens(CreationsError):
    code = "INSUFFICIENT_TOKENS"

    def __init__(self, message: str, *, balance: int, cost: int):
        super().__init__(message)
        self.balance = balance
        self.cost = cost


class NotFound(CreationsError):
    code = "NOT_FOUND"


class IllegalTransition(CreationsError):
    """A status change the state machine forbids (e.g. draft -> processing)."""

    code = "ILLEGAL_TRANSITION"


class StaleAttempt(CreationsError):
    """A step or write for an attempt that is no longer the creation's current one."""

    code = "STALE_ATTEMPT"


class IdempotencyConflict(CreationsError):
    """The same idempotency key was used with a different request body."""

    code = "IDEMPOTENCY_CONFLICT"


class TooManyActive(CreationsError):
    """The user already has the maximum number of creations pending or processing."""

    code = "TOO_MANY_ACTIVE"
    retryable = True


class StoreUnavailable(CreationsError):
    """The store could not be reached or a transaction kept conflicting."""

    code = "STORE_UNAVAILABLE"
    retryable = True


class ContentPolicy(CreationsError):
    """The generation provider refused the prompt or filtered the output."""

    code = "CONTENT_POLICY"


class InvalidRequest(CreationsError):
    """The provider answered 400: retrying the same request cannot help."""

    code = "INVALID_REQUEST"


class ProviderUnavailable(CreationsError):
    """429, 5xx, timeouts, connection failures: worth retrying with backoff."""

    code = "PROVIDER_UNAVAILABLE"
    retryable = True


class StorageError(CreationsError):
    code = "STORAGE_ERROR"
    retryable = True


class MediaError(CreationsError):
    """Media could not be decoded or transcoded (ffmpeg failed)."""

    code = "MEDIA_ERROR"

"""Every error dhan-postback raises on purpose, and how each one meets HTTP.

The tree::

    DhanPostbackError
    ├── PayloadError ..................... DH-905 Input_Exception   400
    │   ├── UnreadablePayload             a body that is not a JSON object, even after repair
    │   │   └── UnstorablePayload         read, but the receiver's store refuses its values
    │   ├── InvalidUpdate                 strict validation failed; ``.field`` names the field
    │   │   └── IllegalTransition         an update that cannot follow the order's previous one
    │   │                                 (``.rule`` is a stable tag, see lifecycle.Violation)
    │   └── BatchTooLarge                 more updates in one request than allowed
    ├── RequestTooLarge .................. DH-905 Input_Exception   413
    ├── UnsupportedMediaType ............. DH-905 Input_Exception   415
    ├── MethodNotAllowed ................. DH-905 Input_Exception   405
    ├── URLRefused ....................... DH-905 Input_Exception   422  (``.reason``)
    ├── AuthenticationError .............. DH-901 Invalid_Authentication 401
    │   └── SignatureError                a postback whose signature or timestamp fails
    ├── PermissionDenied ................. DH-901 Invalid_Authentication 403
    ├── TooManyFailures .................. DH-904 Rate_Limit        429  (service/throttle.py;
    │                                     ``Retry-After``: wrong credentials from one address)
    ├── NotFound ......................... DH-907 Data_Error        404
    ├── Conflict ......................... DH-905 Input_Exception   409
    ├── StoreUnavailable ................. DH-908 Internal_Server_Error 503
    └── InternalError .................... DH-908 Internal_Server_Error 500  (a bug, logged)

HTTP layers turn any of these into the broker's error shape with :func:`error_body`::

    {"errorType": "Input_Exception", "errorCode": "DH-905", "errorMessage": "..."}

Messages never contain a token, a key or a signing secret.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final, NamedTuple

__all__ = [
    "AUTHENTICATION",
    "DATA",
    "INPUT",
    "INTERNAL",
    "RATE_LIMIT",
    "AuthenticationError",
    "BatchTooLarge",
    "Conflict",
    "DhanPostbackError",
    "ErrorCode",
    "IllegalTransition",
    "InternalError",
    "InvalidUpdate",
    "MethodNotAllowed",
    "NotFound",
    "PayloadError",
    "PermissionDenied",
    "RequestTooLarge",
    "SignatureError",
    "StoreUnavailable",
    "URLRefused",
    "UnreadablePayload",
    "UnstorablePayload",
    "UnsupportedMediaType",
    "error_body",
]


class ErrorCode(NamedTuple):
    """The broker's ``errorType`` and the ``errorCode`` that goes with it."""

    error_type: str
    error_code: str


INPUT: Final = ErrorCode("Input_Exception", "DH-905")
AUTHENTICATION: Final = ErrorCode("Invalid_Authentication", "DH-901")
RATE_LIMIT: Final = ErrorCode("Rate_Limit", "DH-904")
DATA: Final = ErrorCode("Data_Error", "DH-907")
INTERNAL: Final = ErrorCode("Internal_Server_Error", "DH-908")


class DhanPostbackError(Exception):
    """Base of every error the project raises on purpose.

    A subclass names its broker code and HTTP status in its header, as the tree above does
    (``class NotFound(DhanPostbackError, code=DATA, status=404)``); without them it keeps
    its parent's.
    """

    error_type: ClassVar[str] = "Others"
    error_code: ClassVar[str] = "DH-910"
    http_status: ClassVar[int] = 400

    def __init_subclass__(
        cls, *, code: ErrorCode | None = None, status: int | None = None, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.error_type, cls.error_code = code
        if status is not None:
            cls.http_status = status

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PayloadError(DhanPostbackError, code=INPUT, status=400):
    """A request body the API refuses: unreadable, invalid, or too many updates."""


class UnreadablePayload(PayloadError):
    """The body cannot be read as a JSON object (or lacks an ``orderId``)."""


class UnstorablePayload(UnreadablePayload):
    """A postback the receiver could read but not store: it would fail the same way forever,
    so it is refused (and quarantined) once with a 400 rather than a 503 on every retry."""


class InvalidUpdate(PayloadError):
    """An update failed strict validation. ``field`` is its wire name, when known."""

    def __init__(self, message: str, *, field: str | None = None, index: int | None = None):
        if index is not None:
            message = f"update [{index}]: {message}"
        super().__init__(message)
        self.field = field
        self.index = index


class IllegalTransition(InvalidUpdate):
    """An update that cannot follow the previous one of the same order.

    ``rule`` is a short stable tag (the values of :class:`dhan_postback.lifecycle.Violation`),
    so callers can tell "status went back" from "filled_qty went down" without reading prose.
    """

    def __init__(self, message: str, *, rule: str, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.rule = rule


class BatchTooLarge(PayloadError):
    """More updates in one request than the service accepts."""


class RequestTooLarge(DhanPostbackError, code=INPUT, status=413):
    """A body longer than the configured limit (read no further than that)."""


class UnsupportedMediaType(DhanPostbackError, code=INPUT, status=415):
    """A body sent with a Content-Type other than JSON."""


class MethodNotAllowed(DhanPostbackError, code=INPUT, status=405):
    """A route asked with a method it does not take."""


class URLRefused(DhanPostbackError, code=INPUT, status=422):
    """A Postback URL the policy does not allow. ``reason`` is a short stable tag."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class AuthenticationError(DhanPostbackError, code=AUTHENTICATION, status=401):
    """A missing, unknown, expired or revoked credential."""


class SignatureError(AuthenticationError):
    """A postback's Standard Webhooks signature is missing, wrong or stale."""


class PermissionDenied(DhanPostbackError, code=AUTHENTICATION, status=403):
    """A valid credential asking for what is not its own."""


class NotFound(DhanPostbackError, code=DATA, status=404):
    """No such delivery, token or endpoint (or not the caller's to see)."""


class Conflict(DhanPostbackError, code=INPUT, status=409):
    """A request that clashes with work in progress or with an earlier request."""


class StoreUnavailable(DhanPostbackError, code=INTERNAL, status=503):
    """The store does not answer: try again later, nothing was committed."""


class InternalError(DhanPostbackError, code=INTERNAL, status=500):
    """Something the code did not expect: the client gets this, the log gets the details."""


def error_body(error: DhanPostbackError) -> dict[str, str]:
    """The broker's error shape for ``error``."""
    return {
        "errorType": error.error_type,
        "errorCode": error.error_code,
        "errorMessage": error.message,
    }

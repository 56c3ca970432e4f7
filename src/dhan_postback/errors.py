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

from typing import ClassVar

__all__ = [
    "AuthenticationError",
    "BatchTooLarge",
    "Conflict",
    "DhanPostbackError",
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


class DhanPostbackError(Exception):
    """Base of every error the project raises on purpose."""

    error_type: ClassVar[str] = "Others"
    error_code: ClassVar[str] = "DH-910"
    http_status: ClassVar[int] = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PayloadError(DhanPostbackError):
    error_type = "Input_Exception"
    error_code = "DH-905"
    http_status = 400


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


class RequestTooLarge(DhanPostbackError):
    error_type = "Input_Exception"
    error_code = "DH-905"
    http_status = 413


class UnsupportedMediaType(DhanPostbackError):
    """A body sent with a Content-Type other than JSON."""

    error_type = "Input_Exception"
    error_code = "DH-905"
    http_status = 415


class MethodNotAllowed(DhanPostbackError):
    error_type = "Input_Exception"
    error_code = "DH-905"
    http_status = 405


class URLRefused(DhanPostbackError):
    """A Postback URL the policy does not allow. ``reason`` is a short stable tag."""

    error_type = "Input_Exception"
    error_code = "DH-905"
    http_status = 422

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class AuthenticationError(DhanPostbackError):
    error_type = "Invalid_Authentication"
    error_code = "DH-901"
    http_status = 401


class SignatureError(AuthenticationError):
    """A postback's Standard Webhooks signature is missing, wrong or stale."""


class PermissionDenied(DhanPostbackError):
    error_type = "Invalid_Authentication"
    error_code = "DH-901"
    http_status = 403


class NotFound(DhanPostbackError):
    error_type = "Data_Error"
    error_code = "DH-907"
    http_status = 404


class Conflict(DhanPostbackError):
    error_type = "Input_Exception"
    error_code = "DH-905"
    http_status = 409


class StoreUnavailable(DhanPostbackError):
    error_type = "Internal_Server_Error"
    error_code = "DH-908"
    http_status = 503


class InternalError(DhanPostbackError):
    """Something the code did not expect: the client gets this, the log gets the details."""

    error_type = "Internal_Server_Error"
    error_code = "DH-908"
    http_status = 500


def error_body(error: DhanPostbackError) -> dict[str, str]:
    """The broker's error shape for ``error``."""
    return {
        "errorType": error.error_type,
        "errorCode": error.error_code,
        "errorMessage": error.message,
    }

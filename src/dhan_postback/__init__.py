"""dhan-postback: DhanHQ v2 order-update postbacks, end to end.

The public surface, re-exported here; everything else is internal.
"""

from ._version import __version__
from .errors import (
    AuthenticationError,
    DhanPostbackError,
    InvalidUpdate,
    NotFound,
    PayloadError,
    SignatureError,
    UnreadablePayload,
    URLRefused,
)
from .payload import (
    FIELDS,
    ExchangeSegment,
    LegName,
    OptionType,
    OrderStatus,
    OrderType,
    OrderUpdate,
    ProductType,
    ReceivedUpdate,
    TransactionType,
    Validity,
    dumps,
    parse,
    validate_strict,
)

__all__ = [
    "FIELDS",
    "AuthenticationError",
    "DhanPostbackError",
    "ExchangeSegment",
    "InvalidUpdate",
    "LegName",
    "NotFound",
    "OptionType",
    "OrderStatus",
    "OrderType",
    "OrderUpdate",
    "PayloadError",
    "ProductType",
    "ReceivedUpdate",
    "SignatureError",
    "TransactionType",
    "URLRefused",
    "UnreadablePayload",
    "Validity",
    "__version__",
    "dumps",
    "parse",
    "validate_strict",
]

"""dhan-postback: DhanHQ v2 order-update postbacks, end to end.

The public surface, re-exported here; everything else is internal.
"""

from ._version import __version__
from .errors import (
    AuthenticationError,
    DhanPostbackError,
    IllegalTransition,
    InvalidUpdate,
    NotFound,
    PayloadError,
    SignatureError,
    UnreadablePayload,
    URLRefused,
)
from .lifecycle import (
    ChangeKind,
    change_kind,
    check_transition,
    is_terminal,
    progress_key,
    status_rank,
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
    "ChangeKind",
    "DhanPostbackError",
    "ExchangeSegment",
    "IllegalTransition",
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
    "change_kind",
    "check_transition",
    "dumps",
    "is_terminal",
    "parse",
    "progress_key",
    "status_rank",
    "validate_strict",
]

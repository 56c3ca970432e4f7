"""How deep a JSON body nests, found without recursion, before any recursive decoder sees it.

JSON decoders (msgspec, the stdlib, pydantic) descend one call per ``[`` or ``{``. A body of
100,000 nested brackets is only 100 KB, and it makes them raise ``RecursionError`` (a 500 and a
traceback) instead of a clean refusal. A postback nests one level (an object) and a batch two
(an array of objects), so :data:`MAX_DEPTH` leaves a wide margin for extra fields and still
refuses such bodies with a 400, the same in the service's ingest and in the receiver.

The scan is cheap on purpose: a body with no more brackets than the limit cannot nest deeper
(one ``count``, the common case); otherwise strings are cut out and every matched ``[]`` pair is
removed level by level with ``bytes.replace``, all at C speed. Only a body that is still not
empty after :data:`MAX_DEPTH` levels is walked bracket by bracket, and that walk stops at the
first level past the limit (the worst case, a maximal body crafted to be deep only at its end,
costs a few hundred milliseconds).
"""

from __future__ import annotations

import re
from typing import Final

from .errors import UnreadablePayload

__all__ = ["MAX_DEPTH", "check_depth", "depth_exceeds"]

MAX_DEPTH: Final = 32
"""The deepest nesting of arrays and objects accepted in a JSON body."""

_STRING: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
_NOT_BRACKETS_OR_QUOTES: Final = bytes(b for b in range(256) if b not in b'[]{}"')
_AS_SQUARE: Final = bytes.maketrans(b"{}", b"[]")


def depth_exceeds(body: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether ``body``, read left to right, opens more than ``limit`` nested arrays/objects.

    Brackets inside strings do not count. A body that is not valid JSON is measured as far
    as a decoder would read it: unclosed brackets count, and a stray closer ends the walk
    (the decoder refuses the body there).
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    brackets = _outside_strings(body).translate(_AS_SQUARE, _NOT_BRACKETS)
    reduced = brackets
    for _ in range(limit):
        shorter = reduced.replace(b"[]", b"")
        if not shorter:
            return False  # balanced, and no deeper than the levels removed so far
        if shorter == reduced:
            break
        reduced = shorter
    depth = 0
    for byte in brackets:
        if byte == 0x5B:  # [
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
            if depth < 0:
                return False
    return False


def _outside_strings(body: bytes) -> bytes:
    """``body`` without its JSON strings (whose brackets are text, not nesting).

    Without a backslash no quote is escaped, so strings are exactly what lies between odd
    and even quotes: a split of the brackets and quotes alone, much faster than the regular
    expression needed otherwise. Either way only brackets (and quotes) are left to count.
    """
    if b"\\" not in body:
        return b"".join(body.translate(None, _NOT_BRACKETS_OR_QUOTES).split(b'"')[::2])
    return _STRING.sub(b"", body)


def check_depth(body: bytes, limit: int = MAX_DEPTH) -> None:
    """Refuse (400) a body that nests deeper than ``limit``; see :func:`depth_exceeds`."""
    if depth_exceeds(body, limit):
        raise UnreadablePayload(f"the body nests arrays or objects deeper than {limit} levels")

"""Logging for every long-running command: structlog, JSON when nobody is watching.

On a terminal, lines are ``key=value`` for people; anywhere else (a file, journald, a log
shipper) each line is one JSON object for machines. Tracebacks never include local variables,
so a secret held in a local cannot reach a log line.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

__all__ = ["configure_logging"]


def configure_logging(
    level: int = logging.INFO, *, json: bool | None = None, stream: TextIO | None = None
) -> None:
    """Send structlog and stdlib logging to ``stream`` (stderr); ``json`` defaults to "not a
    TTY"."""
    stream = stream or sys.stderr
    as_json = not stream.isatty() if json is None else json
    logging.basicConfig(level=level, stream=stream, format="%(message)s", force=True)
    renderer: Any
    if as_json:
        renderer = structlog.processors.JSONRenderer()
        tracebacks: Any = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
        tracebacks = structlog.processors.format_exc_info
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            tracebacks,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )

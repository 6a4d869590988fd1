"""structlog set up once per process: JSON lines in production, a readable console otherwise."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# C0 controls, DEL and C1 controls: a newline forges a second log line, ESC repaints a
# terminal, and both can come from anything a client sends.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char, f"\\x{ord(char):02x}")


def escape(text: str) -> str:
    """`text` with every control character written as an escape (a newline as `\\n`)."""
    return _CONTROL.sub(_escape_char, text)


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        # Nearly every string is clean: searching is cheaper than substituting.
        return escape(value) if _CONTROL.search(value) else value
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def escape_controls(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: escape control characters in every string, keys included."""
    # Nearly every line has only str keys and clean strings, numbers or None: it passes as it
    # is, without a copy, after one search over its strings. Anything else (a nested value, a
    # control character) is cleaned below.
    strings: list[str] = []
    for k, v in event.items():
        if type(k) is not str:
            break
        strings.append(k)
        if v is None or type(v) in _PLAIN:
            continue
        if type(v) is not str:
            break
        strings.append(v)
    else:
        if not _CONTROL.search("".join(strings)):
            return event
    return {
        # Numbers, None and booleans (most values) pass as they are, without a call.
        _clean(k): v if v is None or type(v) in _PLAIN else _clean(v)
        for k, v in event.items()
    }


_PLAIN = (int, float, bool)


def processors(fmt: str = "console", colors: bool = False) -> list[structlog.typing.Processor]:
    """The processor chain, renderer last; its control characters are escaped before it."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=colors)
    )
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # Tracebacks become a string here, so they are escaped as well: one event, one line.
        structlog.processors.format_exc_info,
        escape_controls,
        renderer,
    ]


def configure(fmt: str = "console", level: str = "info") -> None:
    """Configure structlog for this process."""
    structlog.configure(
        processors=processors(fmt, colors=sys.stderr.isatty()),
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        # One write of the line and its newline, then a flush (print() writes them apart).
        logger_factory=structlog.WriteLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )

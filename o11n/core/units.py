"""Parsing of sizes ("2G") and durations ("20m") as people write them."""

from __future__ import annotations

import re

from o11n.errors import BadRequest

_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_size(value: str | int | float) -> int:
    """Bytes in `value`: an integer, or a number with K, M, G, T or P (powers of 1024)."""
    if isinstance(value, bool):
        raise BadRequest(f"invalid size {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise BadRequest(f"invalid size {value!r}: negative")
        return int(value)
    match = _SIZE_RE.match(value)
    if not match:
        raise BadRequest(f"invalid size {value!r}: use a number with K, M, G or T, like 512M")
    number, unit, _ = match.groups()
    return int(float(number) * _SIZE_UNITS[unit.lower()])


def parse_duration(value: str | int | float) -> float:
    """Seconds in `value`: a number of seconds, or parts like 1h30m, 20m, 90s, 250ms."""
    if isinstance(value, bool):
        raise BadRequest(f"invalid duration {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise BadRequest(f"invalid duration {value!r}: negative")
        return float(value)
    text = value.strip().lower()
    try:
        return parse_duration(float(text))
    except ValueError:
        pass
    parts = _DURATION_PART.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise BadRequest(f"invalid duration {value!r}: use a form like 90s, 20m or 1h30m")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


def format_size(size: int) -> str:
    """A short human form of a byte count: 512M, 2G."""
    for unit in ("P", "T", "G", "M", "K"):
        scale = _SIZE_UNITS[unit.lower()]
        if size >= scale:
            shown = size / scale
            return f"{shown:.0f}{unit}" if shown.is_integer() else f"{shown:.1f}{unit}"
    return str(size)

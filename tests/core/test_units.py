"""Sizes and durations as people write them."""

from __future__ import annotations

import pytest

from o11n.core.units import format_size, parse_duration, parse_size
from o11n.errors import BadRequest


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0),
        ("512M", 512 * 2**20),
        ("2G", 2 * 2**30),
        ("2Gi", 2 * 2**30),
        ("1.5k", 1536),
        ("10GB", 10 * 2**30),
        (4096, 4096),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "2X", "-1G", "G", "1..2G", -5, True])
def test_bad_sizes(bad: object) -> None:
    with pytest.raises(BadRequest):
        parse_size(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("20m", 1200),
        ("1h30m", 5400),
        ("250ms", 0.25),
        ("1.5h", 5400),
        (12, 12),
    ],
)
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "m", "10x", "1h 30m", "-5s", "5s5"])
def test_bad_durations(bad: str) -> None:
    with pytest.raises(BadRequest):
        parse_duration(bad)


def test_format_size() -> None:
    assert [format_size(n) for n in (0, 1023, 2**30, 1536 * 2**20)] == ["0", "1023", "1G", "1.5G"]

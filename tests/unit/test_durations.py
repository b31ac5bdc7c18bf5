"""Go-style durations as the Rollout API writes them."""

from __future__ import annotations

import re

import pytest

from kanary.durations import DURATION_PATTERN, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("10s", 10.0),
        ("1.5s", 1.5),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("1h2m3s", 3723.0),
        ("0s", 0.0),
    ],
)
def test_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "s", "10 s", "-5s", "10d", "1.s", "5sec", "1m 30s"])
def test_parse_refuses_and_names_the_text(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.5, "500ms"),
        (30, "30s"),
        (90, "1m30s"),
        (3600, "1h"),
        (3723, "1h2m3s"),
        (0, "0ms"),
        (2.5, "2.5s"),
    ],
)
def test_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0.25, 1, 59, 61, 3599, 7322])
def test_format_parses_back(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


def test_pattern_is_anchored_for_the_crd() -> None:
    assert re.match(DURATION_PATTERN, "10s")
    assert not re.match(DURATION_PATTERN, "10s junk")

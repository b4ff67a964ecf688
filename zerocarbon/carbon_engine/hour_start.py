"""Parsing the ``hour_start`` of the hourly series users provide (grid factors, contract
volumes): one rule for every file and feed."""

from __future__ import annotations

from datetime import datetime

HOUR_S = 3600


def parse_hour_start(text: str) -> int:
    """POSIX time [s] of an ``hour_start``: ISO 8601 with a UTC offset, on a UTC hour.

    Raises
    ------
    ValueError
        Saying what is wrong with ``text`` (the caller adds where it stands).
    """
    try:
        ts = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"hour_start {text!r} is not ISO 8601") from None
    if ts.tzinfo is None:
        raise ValueError(
            f"hour_start {text!r} has no UTC offset (write e.g. 2026-06-01T08:00+08:00)"
        )
    seconds = ts.timestamp()
    if seconds % HOUR_S != 0:
        raise ValueError(f"hour_start {text!r} does not start a UTC hour")
    return int(seconds)

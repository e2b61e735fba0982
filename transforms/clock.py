"""The clock: now, in UTC, unless a test (or `newsbeam run --now`) fixes it.

Anything that depends on "now" reads it here, so tests that cross days and horizons run on a clock they set.
"""

from __future__ import annotations

import datetime as dt
import os

UTC = dt.timezone.utc

# Fixes the clock (ISO 8601, e.g. 2027-01-10T00:00:00Z) for tests: `newsbeam run --now` sets it for its run.
NOW_ENV = "NEWSBEAM_NOW"


def parse_instant(value: str) -> dt.datetime:
    """An ISO 8601 instant as an aware UTC datetime (UTC when it names no zone); ValueError when it is not one."""
    instant = dt.datetime.fromisoformat(value.strip())
    return (instant if instant.tzinfo else instant.replace(tzinfo=UTC)).astimezone(UTC)


def utcnow() -> dt.datetime:
    """Now, in UTC, to the microsecond (Parquet's resolution); the instant in NEWSBEAM_NOW when it is set."""
    fixed = os.environ.get(NOW_ENV)
    return parse_instant(fixed) if fixed else dt.datetime.now(UTC)

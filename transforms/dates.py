"""Dates as feeds and pages write them, read into aware UTC datetimes.

`parse_date` is the one reader of a date string: the feed readers (transforms/readers/) read entries' dates with it,
and the page extractor (transforms/extract.py) its meta tags and JSON-LD.

    python -c "from transforms.dates import parse_date; print(parse_date('mar., 05 mars 2024 10:00:00 +0100'))"
"""

from __future__ import annotations

import calendar
import datetime as dt
import email.utils
import re
from typing import Any

from transforms.clock import UTC

# feedparser only knows English month names; many real feeds (UOL, older Le Monde and El País feeds...) localise
# RFC 822 dates. Dropping the (redundant) day name and translating the month lets the standard parser do the rest.
_LOCALISED_MONTHS = {
    "ene": "Jan",
    "gen": "Jan",
    "janv": "Jan",
    "fev": "Feb",
    "fév": "Feb",
    "févr": "Feb",
    "fevr": "Feb",
    "mars": "Mar",
    "mär": "Mar",
    "mrz": "Mar",
    "abr": "Apr",
    "avr": "Apr",
    "mai": "May",
    "mag": "May",
    "juin": "Jun",
    "giu": "Jun",
    "juil": "Jul",
    "lug": "Jul",
    "ago": "Aug",
    "août": "Aug",
    "aout": "Aug",
    "set": "Sep",
    "sept": "Sep",
    "out": "Oct",
    "ott": "Oct",
    "okt": "Oct",
    "dez": "Dec",
    "dic": "Dec",
    "déc": "Dec",
}
_LEADING_DAY_NAME = re.compile(r"^\s*[^\W\d_]+\.?,\s*")
_MONTH_WORD = re.compile(r"(?<=\d\s)[^\W\d_]+\.?")


def parse_date(value: str | None) -> dt.datetime | None:
    """A date string as an aware UTC datetime, or None when it cannot be read (or is out of range).

    Ours first (fast): RFC 822, also with localised day and month names; RFC 3339 / ISO 8601, with `Z`, `+0200`
    and any number of fractional digits; a bare date. A date without a zone is read as UTC, the least surprising
    guess. Then the many other formats feedparser's date handlers know (W3C-DTF variants, a date followed by
    words, Korean, Greek, ...).
    """
    return _our_date(value) or _feedparser_date(value)


def _our_date(value: str | None) -> dt.datetime | None:
    if not value or not value.strip():
        return None
    text = value.strip()
    for attempt in (text, _translate_date_words(text)):
        parsed = None
        try:
            parsed = email.utils.parsedate_to_datetime(attempt)
        except (TypeError, ValueError, IndexError, OverflowError):
            pass
        if parsed is None:
            try:
                parsed = dt.datetime.fromisoformat(attempt.replace("Z", "+00:00"))
            except ValueError:
                pass
        if parsed is not None:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)  # a date without a zone is read as UTC: the least surprising guess
            try:
                return parsed.astimezone(UTC)
            except (OverflowError, ValueError):  # 9999-12-31T23:59:59-14:00, 0001-01-01T00:00:00+14:00
                return None
    return None


def _translate_date_words(text: str) -> str:
    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        return _LOCALISED_MONTHS.get(word.lower().rstrip("."), word)

    return _MONTH_WORD.sub(swap, _LEADING_DAY_NAME.sub("", text))


def _feedparser_date(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        # feedparser has no public date parser. Should this private one go, the import fails here and only the
        # rarer formats are lost; tests/transforms/test_dates.py then fails on a date only feedparser reads.
        from feedparser.datetimes import _parse_date

        return struct_to_datetime(_parse_date(value))
    except Exception:  # noqa: BLE001 - a date handler's surprise costs the date, not the entry
        return None


def struct_to_datetime(value: Any) -> dt.datetime | None:
    """A UTC `time.struct_time` (feedparser's `*_parsed` fields) as an aware datetime; None when there is none."""
    if not value:
        return None
    try:
        return dt.datetime.fromtimestamp(calendar.timegm(value), UTC)
    except (TypeError, ValueError, OverflowError):
        return None

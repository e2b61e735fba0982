"""transforms.dates.parse_date: the one date reader of the feed readers and the page extractor."""

import datetime as dt

import pytest

from transforms.clock import UTC
from transforms.dates import parse_date


@pytest.mark.parametrize(
    "text, expected",
    [
        # What feeds write: RFC 822, also with localised day and month names.
        ("Seg, 24 Set 2018 19:42:40 -0300", dt.datetime(2018, 9, 24, 22, 42, 40, tzinfo=UTC)),
        ("mar., 13 mars 2018 10:00:00 +0100", dt.datetime(2018, 3, 13, 9, 0, tzinfo=UTC)),
        ("Tue, 05 Mar 2024 10:00:00 GMT", dt.datetime(2024, 3, 5, 10, 0, tzinfo=UTC)),  # a page's meta tag too
        # What meta tags, JSON-LD and Atom write: ISO 8601 in its forms.
        ("2026-11-20T10:00:00Z", dt.datetime(2026, 11, 20, 10, 0, tzinfo=UTC)),
        ("2024-03-05T10:00:00+0200", dt.datetime(2024, 3, 5, 8, 0, tzinfo=UTC)),
        ("2024-03-05T10:00:00.1234567Z", dt.datetime(2024, 3, 5, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2024-03-05 10:00", dt.datetime(2024, 3, 5, 10, 0, tzinfo=UTC)),  # no zone: read as UTC
        ("2026-11-20", dt.datetime(2026, 11, 20, tzinfo=UTC)),
        # Only feedparser's handlers read a date followed by words: this fails if that fallback goes.
        ("2024-03-05 at noon", dt.datetime(2024, 3, 5, tzinfo=UTC)),
        ("yesterday-ish", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_date(text, expected):
    assert parse_date(text) == expected


def test_a_date_out_of_range_in_utc_is_none_not_an_error():
    # The page extractor's own reader raised OverflowError here, which cost the whole page.
    assert parse_date("0001-01-01T00:00:00+14:00") is None

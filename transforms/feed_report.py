"""FeedReport: what happened to one feed in one run, and the readings of a response that go into it.

ParseEntries fills a report for each feed it reads; ReportFeedHealth (transforms/health.py) adds the feeds that failed
and the entries new to the dataset; the driver folds it into the feed's health (pipeline/schedule.py). A module of
its own, so that the stages that build reports need not import each other.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re

from transforms import spool
from transforms.spool import Body


@dataclasses.dataclass(frozen=True)
class FeedReport:
    """What happened to one feed in one run."""

    feed_url: str
    fetched_at: dt.datetime | None = None
    ok: bool = False
    status: int | None = None
    error: str = ""
    not_modified: bool = False
    sent_validators: bool = False
    etag: str = ""
    last_modified: str = ""
    body_hash: str = ""
    entries: int = 0
    new_entries: int = 0
    ttl_seconds: float | None = None
    max_age_seconds: float | None = None
    retry_after_seconds: float | None = None


def body_hash(body: Body) -> str:
    """The hash by which two fetches of a feed are compared (a spooled body hashed a chunk at a time)."""
    digest = hashlib.blake2b(digest_size=16)
    for part in spool.chunks(body):
        digest.update(part)
    return digest.hexdigest()


_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d+)", re.I)


def max_age_seconds(cache_control: str | None) -> float | None:
    """`max-age` from a Cache-Control header, or None."""
    if not cache_control or re.search(r"no-cache|no-store", cache_control, re.I):
        return None
    match = _MAX_AGE.search(cache_control)
    return float(match.group(1)) if match else None

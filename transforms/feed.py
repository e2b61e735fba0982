"""What passes between the feed stages: the feed as configured (FeedSource) and as fetched (FetchedFeed).

FetchFeeds takes FeedSources and gives FetchedFeeds; ParseEntries reads them. Both live here, beside Article, so
that neither stage imports the other.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from transforms import spool
from transforms.spool import Body


@dataclasses.dataclass(frozen=True)
class FeedSource:
    """One configured feed. `url` is http(s), file://, or an absolute local path.

    `etag` and `last_modified` are the validators of the last fetch; when set, the request is conditional
    (If-None-Match / If-Modified-Since) and a 304 comes back as a FetchedFeed with `not_modified`.
    """

    name: str
    url: str
    language: str = ""
    topic: str = ""
    # Full article text for this feed's entries: "off", "when_short" or "always"; "" follows the config's extract.mode.
    extract: str = ""
    etag: str = ""
    last_modified: str = ""


@dataclasses.dataclass(frozen=True)
class FetchedFeed:
    """The raw bytes of one feed as fetched, with what the parser needs to decode them.

    A big body (over `fetch.spool_bytes`, in the per-feed loop) is a SpooledBody, a temporary file: whoever fetched
    it calls `close()` when the feed is read. transforms/spool.py reads either kind.
    """

    source: FeedSource
    url: str  # final URL after redirects (the path as given for local files)
    status: int | None  # None for local files
    content_type: str  # exactly as sent, charset parameter included
    body: Body  # decoded (gunzipped) body: bytes, or a SpooledBody when big
    fetched_at: dt.datetime
    headers: tuple[tuple[str, str], ...] = ()  # fetch.INTERESTING_HEADERS present in the response, in that order

    @property
    def not_modified(self) -> bool:
        """True for a 304 answer to a conditional request: nothing new, and no body."""
        return self.status == 304

    def close(self) -> None:
        """Free a spooled body's file; nothing to do for a body in memory."""
        spool.close(self.body)

    def header(self, name: str) -> str:
        """A kept response header, '' when absent (names compare case-insensitively)."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), "")

"""The feed readers: one document's bytes in, its entries out as Articles (or dead letters), one at a time.

One file per format over a small base, as DataTrove's readers: base.py (the settings and what turns an entry's fields
into an Article, shared), xml.py (RSS and Atom, streamed with lxml), salvage.py (feedparser, for what xml.py cannot
read), json_feed.py (JSON Feed). The charset (transforms/charsets.py), the dates (transforms/dates.py) and the
links (transforms/urls.py) are shared with the page extractor, so they live beside this package, not in it.
ParseEntries (transforms/parse.py) is the stage that runs them.
"""

from __future__ import annotations

from collections.abc import Iterator

from transforms.article import Article
from transforms.charsets import choose_decoding
from transforms.dead_letter import DeadLetter
from transforms.feed import FetchedFeed
from transforms.readers.base import EntryReader, FeedStats, ParseSettings, feed_problem
from transforms.readers.json_feed import is_json_feed, read_json_feed
from transforms.readers.xml import read_xml


def read_entries(fetched: FetchedFeed, settings: ParseSettings, stats: FeedStats) -> Iterator[Article | DeadLetter]:
    """The articles and entry dead letters of one fetched document, by its charset and format; `stats` gets the
    rest (a feed-level problem among it). May raise on a reader's bug: ParseEntries counts that as `parse_error`."""
    decoding = choose_decoding(fetched.body, fetched.content_type)
    if decoding is None:
        stats.problem = feed_problem(fetched, "bad_encoding", "no character encoding decodes this document")
        return
    stats.encoding_repaired = decoding.repaired
    reader = EntryReader(fetched, settings, stats)
    if is_json_feed(fetched.body[decoding.bom :], fetched.content_type):
        stats.parser = "json"
        yield from read_json_feed(fetched, decoding, reader)
        return
    # lxml reads UTF-8 bytes as they are; anything else is re-encoded once (the XML declaration is overridden).
    if decoding.codec == "utf-8" and decoding.errors == "strict":
        data = fetched.body[decoding.bom :]
    else:
        data = decoding.decode(fetched.body).encode("utf-8")
    yield from read_xml(fetched, data, reader)

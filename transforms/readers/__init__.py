"""The feed readers: one document's bytes in, its entries out as Articles (or dead letters), one at a time.

One file per format over a small base, as DataTrove's readers: base.py (the settings and what turns an entry's fields
into an Article, shared), xml.py (RSS and Atom, streamed with lxml), salvage.py (feedparser, for what xml.py cannot
read), json_feed.py (JSON Feed). The charset (transforms/charsets.py), the dates (transforms/dates.py) and the
links (transforms/urls.py) are shared with the page extractor, so they live beside this package, not in it.
ParseEntries (transforms/parse.py) is the stage that runs them. A document's bytes are in memory or, when big, in a
temporary file (transforms/spool.py): xml.py streams either, so a big feed is never held whole (JSON Feed and
feedparser's salvage read the whole document, spooled or not).
"""

from __future__ import annotations

from collections.abc import Iterator

from transforms import spool
from transforms.article import Article
from transforms.charsets import choose_decoding
from transforms.dead_letter import DeadLetter
from transforms.feed import FetchedFeed
from transforms.readers.base import EntryReader, FeedStats, ParseSettings, feed_problem
from transforms.readers.json_feed import is_json_feed, read_json_feed
from transforms.readers.xml import read_xml
from transforms.spool import BodySink


def read_entries(fetched: FetchedFeed, settings: ParseSettings, stats: FeedStats) -> Iterator[Article | DeadLetter]:
    """The articles and entry dead letters of one fetched document, by its charset and format; `stats` gets the
    rest (a feed-level problem among it). May raise on a reader's bug: ParseEntries counts that as `parse_error`."""
    body = fetched.body
    decoding = choose_decoding(body, fetched.content_type)
    if decoding is None:
        stats.problem = feed_problem(fetched, "bad_encoding", "no character encoding decodes this document")
        return
    stats.encoding_repaired = decoding.repaired
    reader = EntryReader(fetched, settings, stats)
    if is_json_feed(spool.after(body, decoding.bom), fetched.content_type):
        stats.parser = "json"
        yield from read_json_feed(fetched, decoding, reader)
        return
    # lxml reads UTF-8 bytes as they are; anything else is re-encoded once (the XML declaration is overridden).
    if decoding.codec == "utf-8" and decoding.errors == "strict":
        yield from read_xml(fetched, spool.after(body, decoding.bom), reader)
    elif isinstance(body, bytes):
        yield from read_xml(fetched, decoding.decode(body).encode("utf-8"), reader)
    else:
        # A spooled body is re-encoded into another temporary file, never into memory.
        with BodySink(spool_over=0) as sink:
            for text in decoding.decode_chunks(body):
                sink.write(text.encode("utf-8"))
            data = sink.result()
        try:
            yield from read_xml(fetched, data, reader)
        finally:
            spool.close(data)

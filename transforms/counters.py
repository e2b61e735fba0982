"""The names of the Beam counters that are read back: by the run summary (pipeline/summary.py), the progress line
(pipeline/progress.py) and tests. A stage counts with `counter(NAME)`, a reader looks up `NAME` in the
`namespace/name` -> value dict of `pipeline.summary.counter_values`; one name, spelled once.

Counters no one reads back by name (a stage's own diagnostics, such as `parse/links_dropped`) stay literals in their
stage; the run record lists every counter all the same.
"""

from __future__ import annotations

from apache_beam.metrics import Metrics

FEEDS_OK = "fetch/feeds_ok"
FEEDS_FAILED = "fetch/feeds_failed"

FEEDS_PARSED = "parse/feeds_parsed"
MALFORMED_FEEDS = "parse/malformed_feeds"
NOT_A_FEED = "parse/not_a_feed"
NOT_MODIFIED = "parse/not_modified"
ENTRIES_READ = "parse/entries_read"
ARTICLES_PARSED = "parse/articles"

ARTICLES_CLEANED = "clean/articles_cleaned"
ARTICLES_CLASSIFIED = "classify/articles"

DUPLICATES = "dedup/duplicates"
ALREADY_WRITTEN = "dedup/already_written"

NEAR_COPIES_DROPPED = "neardup/copies_dropped"
NEAR_COPIES_MARKED = "neardup/copies_marked"
NEAR_CLUSTERS = "neardup/clusters"
NEAR_MATCHED_PRIOR = "neardup/matched_prior"
NEAR_REVISIONS = "neardup/revisions"

ARTICLES_WRITTEN = "sink/articles"
DEAD_LETTER_ENTRIES = "sink/dead_letter_entries"
DEAD_LETTER_FEEDS = "sink/dead_letter_feeds"
DEAD_LETTER_PAGES = "sink/dead_letter_pages"

# Namespaces with one counter per value: `sink.dead_letter/<stage>/<reason>`, `sink.language/<code>`, ...
BY_DEAD_LETTER_REASON = "sink.dead_letter"
BY_LANGUAGE = "sink.language"
BY_TOPIC = "sink.topic"


def counter(name: str):
    """The Beam counter of `name` (`namespace/name`), to `.inc()` in a stage."""
    namespace, _, short = name.partition("/")
    return Metrics.counter(namespace, short)

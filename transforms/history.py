"""ReadWrittenKeys and ReadPriorSignatures: what earlier runs wrote, for deduplication across runs.

ReadWrittenKeys reads the key index the driver prepared for this run (pipeline.seen_index: `_state/seen/`, expired rows
dropped, crashed runs reconciled): one row per article written and still seen in a feed, with 64-bit hashes of its
id, canonical URL and content hash. Its size follows what the feeds carry, not the age of the output, and it is
streamed as Arrow record batches: no step holds it whole. DeduplicateArticles matches the batches against the (much
smaller) set of this run's keys.

ReadPriorSignatures reads the near-duplicate signatures earlier runs kept in the run state
(`_state/signatures/date=<published date>/`), for DeduplicateNearCopies to match copies against yesterday's originals.
"""

from __future__ import annotations

import datetime as dt

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.parquetio import ReadAllFromParquet, ReadAllFromParquetBatched

from transforms.neardup.records import signature_from_row

# The index columns DeduplicateArticles matches on (transforms.dedup.INDEX_KEY_COLUMNS).
KEY_COLUMNS = ("id_key", "url_key", "content_key")


def lookback_patterns(articles_path: str, now: dt.datetime, lookback_seconds: float, future_days: int = 2) -> list[str]:
    """File patterns of every partition whose date lies in [now - lookback, now + future_days].

    `future_days` covers event times a little ahead of the clock (ParseEntries trusts dates up to a day ahead).
    """
    first = (now - dt.timedelta(seconds=lookback_seconds)).date()
    last = (now + dt.timedelta(days=future_days)).date()
    days = (last - first).days
    return [
        FileSystems.join(articles_path, f"date={first + dt.timedelta(days=d):%Y-%m-%d}", "**.parquet")
        for d in range(days + 1)
    ]


class ReadWrittenKeys(beam.PTransform):
    """Root transform: Arrow tables with KEY_COLUMNS of the key index file `index_path` (none when it is empty)."""

    def __init__(self, index_path: str):
        super().__init__()
        self._paths = [index_path] if index_path else []

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "Index" >> beam.Create(self._paths)
            | "ReadKeyColumns" >> ReadAllFromParquetBatched(columns=list(KEY_COLUMNS))
        )


class ReadPriorSignatures(beam.PTransform):
    """Root transform: the SignatureRecords (prior) kept by earlier runs for articles inside the lookback."""

    def __init__(self, signatures_path: str, now: dt.datetime, lookback_seconds: float):
        super().__init__()
        self._patterns = lookback_patterns(signatures_path, now, lookback_seconds)

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "Partitions" >> beam.Create(self._patterns)
            | "ReadSignatures" >> ReadAllFromParquet()
            | "Records" >> beam.Map(signature_from_row)
        )

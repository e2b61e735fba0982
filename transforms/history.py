"""ReadWrittenKeys and ReadPriorSignatures: what earlier runs wrote, for deduplication across runs.

ReadWrittenKeys reads the identity columns of the output dataset itself.

The dataset is the source of truth for cross-run deduplication: there is no index beside it that could disagree
with it after a crash. Only the partitions inside the lookback (by event-time date) are read, and only three columns
(`article_id`, `url`, `content_hash`), as Arrow record batches streamed file by file: no step ever holds the whole
history in memory. DeduplicateArticles then matches them against the (much smaller) set of this run's keys.

ReadPriorSignatures reads the near-duplicate signatures earlier runs kept in the run state
(`_state/signatures/date=<published date>/`), for DeduplicateNearCopies to match copies against yesterday's originals.
"""

from __future__ import annotations

import datetime as dt

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.parquetio import ReadAllFromParquet, ReadAllFromParquetBatched

from transforms.neardup import signature_from_row

KEY_COLUMNS = ("article_id", "url", "content_hash")


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
    """Root transform: Arrow tables with KEY_COLUMNS of every article file in the lookback partitions."""

    def __init__(self, articles_path: str, now: dt.datetime, lookback_seconds: float):
        super().__init__()
        self._patterns = lookback_patterns(articles_path, now, lookback_seconds)

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "Partitions" >> beam.Create(self._patterns)
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

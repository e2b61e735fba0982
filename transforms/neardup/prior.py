"""ReadPriorSignatures: the near-duplicate signatures earlier runs kept in the run state, for
DeduplicateNearCopies to match copies against yesterday's originals (`_state/signatures/date=<published date>/`,
written by pipeline/build.py with `signature_row`).
"""

from __future__ import annotations

import datetime as dt

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.parquetio import ReadAllFromParquet

from transforms.neardup.records import signature_from_row


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

"""ReadWrittenKeys: what earlier runs wrote, for exact deduplication across runs.

ReadWrittenKeys reads the key index the driver prepared for this run (pipeline.seen_index: `_state/seen/`, expired rows
dropped, crashed runs reconciled): one row per article written and still seen in a feed, with 64-bit hashes of its
id, canonical URL and content hash. Its size follows what the feeds carry, not the age of the output, and it is
streamed as Arrow record batches: no step holds it whole. DeduplicateArticles matches the batches against the (much
smaller) set of this run's keys.
Earlier runs' near-duplicate signatures are read by the near-duplicate stage itself
(transforms/neardup/prior.py: ReadPriorSignatures).
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.io.parquetio import ReadAllFromParquetBatched

from transforms.article import INDEX_KEY_COLUMNS


class ReadWrittenKeys(beam.PTransform):
    """Root transform: Arrow tables with INDEX_KEY_COLUMNS of the key index file `index_path` (none when it is empty)."""

    def __init__(self, index_path: str):
        super().__init__()
        self._paths = [index_path] if index_path else []

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "Index" >> beam.Create(self._paths)
            | "ReadKeyColumns" >> ReadAllFromParquetBatched(columns=list(INDEX_KEY_COLUMNS))
        )

"""The near-duplicate signatures earlier runs kept in the run state (`_state/signatures/date=<published date>/`,
SIGNATURE_SCHEMA rows), for the batch decisions (pipeline/plane/decide.py) to match copies against yesterday's
originals: which partitions lie in the lookback, and their rows of this run's scheme, as one Arrow table.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from transforms.neardup.records import SIGNATURE_SCHEMA


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


def read_prior_signatures(patterns: Iterable[str], scheme: str) -> tuple[pa.Table, int, int]:
    """The signature rows of `scheme` in the files matching `patterns`: (table, rows kept, rows of another scheme,
    which are never compared)."""
    tables = []
    for pattern in patterns:
        try:
            matched = FileSystems.match([pattern])[0].metadata_list
        except Exception:  # no such partition
            continue
        for metadata in matched:
            with FileSystems.open(metadata.path, compression_type="uncompressed") as handle:
                table = pq.read_table(handle)
            # States written before a column existed lack it (`lead`): read as empty.
            for field in SIGNATURE_SCHEMA:
                if field.name not in table.column_names:
                    table = table.append_column(field, pa.nulls(len(table), field.type))
            tables.append(table.select(SIGNATURE_SCHEMA.names).cast(SIGNATURE_SCHEMA))
    if not tables:
        return SIGNATURE_SCHEMA.empty_table(), 0, 0
    table = pa.concat_tables(tables)
    kept = table.filter(pc.fill_null(pc.equal(table.column("scheme"), scheme), False))
    return kept, len(kept), len(table) - len(kept)

"""What earlier runs wrote, for deduplication across runs: which partitions of the run state lie in the lookback.

The batch graph's decision step (pipeline/plane/decide.py) streams the key index the driver prepared for the run
(pipeline.state: `_state/seen/`) past the run's keys (transforms.dedup.written_matches), and reads the near-duplicate
signatures earlier runs kept (`_state/signatures/date=<published date>/`) in the dates `lookback_patterns` names.
"""

from __future__ import annotations

import datetime as dt

from apache_beam.io.filesystems import FileSystems


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

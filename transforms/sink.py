"""WriteParquetPartitions: articles as Parquet, one Hive partition directory per window; dead letters beside them.

Layout under the output directory:

    articles/date=YYYY-MM-DD/hour=HH/part-<run_id>-<token>-<i>-of-<n>.parquet   (hour= dropped for daily windows,
                                                                                 minute=MM added under an hour)
    dead_letter/part-<run_id>-<token>-<i>-of-<n>.parquet

Written with Beam's `fileio.WriteToFiles`, which writes temporary files and renames them into place. Two of its
habits (Beam 2.77) would lose rows silently, so this module works around both: it only creates the base directory,
and a rename into a missing sub-directory fails with a debug-level log, leaving the rows in the temporary file; so the
file-naming function creates the partition directory before it returns the name (it is called right before the
rename, on the worker that renames). And a rename failure is not an error to it, so every file it reports is checked
to exist afterwards, and a missing one fails the run.

Rows in a file are sorted by `published_at` (then `article_id`), with an explicit schema and zstd compression.
The `run_id` column of every article and dead-letter row is set here, from SinkSettings: no stage stamps it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.options.value_provider import StaticValueProvider

from transforms.article import ARTICLE_SCHEMA, Article, article_row
from transforms.counters import (
    ARTICLES_WRITTEN,
    BY_DEAD_LETTER_REASON,
    BY_LANGUAGE,
    BY_TOPIC,
    DEAD_LETTER_ENTRIES,
    DEAD_LETTER_FEEDS,
    DEAD_LETTER_PAGES,
    counter,
)
from transforms.dead_letter import DEAD_LETTER_SCHEMA, DeadLetter, dead_letter_row

ARTICLES_DIR = "articles"
DEAD_LETTER_DIR = "dead_letter"


def partition_path(window_start: dt.datetime, window_seconds: int) -> str:
    """The Hive partition directory of a window: `date=YYYY-MM-DD[/hour=HH[/minute=MM]]`."""
    # Not strftime: %Y does not zero-pad years before 1000 (year 1 would give `date=1-01-01`).
    path = f"date={window_start.year:04d}-{window_start.month:02d}-{window_start.day:02d}"
    if window_seconds < 86400:
        path += f"/hour={window_start.hour:02d}"
    if window_seconds < 3600:
        path += f"/minute={window_start.minute:02d}"
    return path


def partition_depth(window_seconds: int) -> int:
    """How many directory levels `partition_path` makes for this window size."""
    return 1 + (window_seconds < 86400) + (window_seconds < 3600)


class ParquetSink(fileio.FileSink):
    """Buffers the rows of one file, then writes them sorted, as one Parquet file with an explicit schema."""

    def __init__(
        self,
        schema: pa.Schema,
        to_row: Callable[[Any], dict],
        sort_keys: tuple[str, ...],
        constants: dict[str, Any] | None = None,
    ):
        self._schema = schema
        self._to_row = to_row
        self._sort_keys = sort_keys
        self._constants = constants or {}  # columns with one value in every row of the file, such as run_id
        self._fh = None
        self._rows: list[dict] = []

    def open(self, fh) -> None:
        self._fh = fh
        self._rows = []

    def write(self, record: Any) -> None:
        row = self._to_row(record)
        row.update(self._constants)
        self._rows.append(row)

    def flush(self) -> None:
        if self._fh is None:
            return
        self._rows.sort(key=lambda row: tuple(row[k] for k in self._sort_keys))
        table = pa.Table.from_pylist(self._rows, schema=self._schema)
        pq.write_table(table, self._fh, compression="zstd")
        # Beam calls flush once per file before closing it; guard against a second call writing a second footer.
        self._fh = None
        self._rows = []


def _article_sink(run_id: str, _destination: str) -> ParquetSink:
    return ParquetSink(ARTICLE_SCHEMA, article_row, ("published_at", "article_id"), {"run_id": run_id})


def _dead_letter_sink(run_id: str, _destination: str) -> ParquetSink:
    return ParquetSink(
        DEAD_LETTER_SCHEMA, dead_letter_row, ("stage", "reason", "feed_url", "entry_key"), {"run_id": run_id}
    )


class PartitionFileNaming:
    """Names a file `<destination>/part-<run_id>-<token>-<i>-of-<n>.parquet` and makes sure its directory exists.

    `destination` is the partition directory relative to the base path. The random token makes every firing's
    file name unique (in streaming, a late pane of a window must not overwrite the on-time file).
    """

    def __init__(self, base_path: str, run_id: str):
        self._base_path = base_path
        self._run_id = run_id

    def __call__(self, window, pane, shard_index, total_shards, compression, destination) -> str:
        name = f"part-{self._run_id}-{uuid.uuid4().hex[:8]}-{shard_index:05d}-of-{total_shards:05d}.parquet"
        if not destination:
            return name
        try:
            FileSystems.mkdirs(FileSystems.join(self._base_path, destination))
        except OSError:
            pass  # it exists: the usual case once a partition has its first file
        return f"{destination}/{name}"


class _CheckWrittenFn(beam.DoFn):
    """Fails the run when a file WriteToFiles reports is not where it says (its rename failed silently)."""

    def __init__(self, base_path: str, kind: str):
        self._base_path = base_path
        self._files = Metrics.counter("sink", f"files_{kind}")

    def process(self, result: fileio.FileResult) -> Iterable[str]:
        path = FileSystems.join(self._base_path, result.file_name)
        if not FileSystems.exists(path):
            raise OSError(f"{path} was not moved into place: its rows would be lost")
        self._files.inc()
        yield path


class _CountArticlesFn(beam.DoFn):
    def __init__(self):
        self._written = counter(ARTICLES_WRITTEN)

    def process(self, article: Article) -> Iterable[Article]:
        self._written.inc()
        Metrics.counter(BY_LANGUAGE, article.language or "und").inc()
        Metrics.counter(BY_TOPIC, article.topic or "unknown").inc()
        yield article


class _CountDeadLettersFn(beam.DoFn):
    def __init__(self):
        self._entries = counter(DEAD_LETTER_ENTRIES)
        self._feeds = counter(DEAD_LETTER_FEEDS)
        self._pages = counter(DEAD_LETTER_PAGES)

    def process(self, letter: DeadLetter) -> Iterable[DeadLetter]:
        (self._pages if letter.is_page else self._entries if letter.is_entry else self._feeds).inc()
        Metrics.counter(BY_DEAD_LETTER_REASON, f"{letter.stage}/{letter.reason}").inc()
        yield letter


@dataclasses.dataclass(frozen=True)
class SinkSettings:
    """Where and how output is written. `temp_path`: where WriteToFiles stages files before the rename."""

    output_path: str
    run_id: str
    window_seconds: int = 3600
    temp_path: str = ""


class WriteParquet(beam.PTransform):
    """Records -> Parquet files under `<output>/<kind>/<destination(record)>/`, with the sink's workarounds.

    The building block of the writers below; also used for the near-duplicate signatures of the run state.
    Returns the written paths.
    """

    def __init__(
        self,
        settings: SinkSettings,
        kind: str,
        sink: Callable[[str], ParquetSink],
        destination: Callable[[Any], str] = lambda _: "",
    ):
        super().__init__()
        self._settings = settings
        self._kind = kind
        self._sink = sink
        self._destination = destination

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        s = self._settings
        base = FileSystems.join(s.output_path, self._kind)
        return (
            records
            | "Write"
            >> fileio.WriteToFiles(
                path=base,
                destination=self._destination,
                sink=self._sink,
                file_naming=PartitionFileNaming(base, s.run_id),
                temp_directory=_temp_dir(s, self._kind),
                shards=1,
            )
            | "CheckWritten" >> beam.ParDo(_CheckWrittenFn(base, self._kind))
        )


class WriteParquetPartitions(beam.PTransform):
    """Windowed Articles -> Parquet files under `<output>/articles/<partition>/`, each row stamped with the run id.
    Returns the written paths."""

    def __init__(self, settings: SinkSettings):
        super().__init__()
        self._settings = settings

    def expand(self, articles: beam.PCollection) -> beam.PCollection:
        window_seconds = self._settings.window_seconds
        return (
            articles
            | "Count" >> beam.ParDo(_CountArticlesFn())
            | "Files"
            >> WriteParquet(
                self._settings,
                ARTICLES_DIR,
                functools.partial(_article_sink, self._settings.run_id),
                lambda a: partition_path(a.window_start, window_seconds),
            )
        )


class WriteDeadLetters(beam.PTransform):
    """DeadLetters -> Parquet files under `<output>/dead_letter/`, each row stamped with the run id. Returns the written
    paths."""

    def __init__(self, settings: SinkSettings):
        super().__init__()
        self._settings = settings

    def expand(self, letters: beam.PCollection) -> beam.PCollection:
        return (
            letters
            | "Count" >> beam.ParDo(_CountDeadLettersFn())
            | "Files"
            >> WriteParquet(
                self._settings, DEAD_LETTER_DIR, functools.partial(_dead_letter_sink, self._settings.run_id)
            )
        )


def _temp_dir(settings: SinkSettings, kind: str) -> StaticValueProvider:
    # Staging outside articles/ keeps half-written files out of every reader's glob, whatever its rules on dot-files.
    root = settings.temp_path or FileSystems.join(settings.output_path, "_temp")
    return StaticValueProvider(str, FileSystems.join(root, settings.run_id, kind))

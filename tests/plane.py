"""The batch plane's decision and write steps (pipeline/plane/) over Articles given in a test, without feeds: the
articles are staged as stage A stages a feed's, then Decide and WriteWindows run in a real Beam pipeline."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from apache_beam.testing.test_pipeline import TestPipeline

from pipeline.plane.decide import Decide, DecideSettings
from pipeline.plane.finalize import WriteWindows
from pipeline.plane.staging import StageSettings, stage_chunk
from tests.conftest import T0, counters
from transforms.dedup import DedupSettings
from transforms.neardup import SIGNATURE_SCHEMA, NearDedupSettings, SignatureRecord, signature_row
from transforms.sink import SinkSettings


@dataclasses.dataclass
class PlaneResult:
    rows: list[dict]  # the article rows written
    signatures: list[dict]  # the signature rows kept for later runs
    seen_keys: list[dict]
    counters: dict[str, dict[str, int]]  # by namespace


def run_plane(
    tmp: Path,
    articles: list,
    neardup: NearDedupSettings = NearDedupSettings(),
    dedup: DedupSettings = DedupSettings(),
    prior: list[SignatureRecord] | None = None,
    index: pa.Table | None = None,
    chunk_size: int = 1000,
    shard_bytes: int = 64 << 20,
    window_seconds: int = 3600,
) -> PlaneResult:
    """Stage `articles` (as one feed, in chunks of `chunk_size`), decide and write; read back what was written.
    `prior`: signature records of earlier runs (the run state); `index`: key index rows of earlier runs."""
    tmp.mkdir(parents=True, exist_ok=True)
    work, out = str(tmp / "work"), tmp / "out"
    stage = StageSettings(work, window_seconds, neardup)
    articles = [a if a.published_at else dataclasses.replace(a, published_at=T0) for a in articles]
    staged = [
        stage_chunk(articles[i : i + chunk_size], 0, i // chunk_size, stage)
        for i in range(0, len(articles), chunk_size)
    ]
    chunks = [chunk for chunk, _ in staged]
    signed = sum(n for _, n in staged) if neardup.enabled else 0
    patterns: tuple[str, ...] = ()
    if prior:
        state = tmp / "state" / "date=2026-11-20"
        state.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist([signature_row(r) for r in prior], SIGNATURE_SCHEMA), state / "p.parquet")
        patterns = (str(tmp / "state" / "**.parquet"),)
    index_path = ""
    if index is not None:
        index_path = str(tmp / "index.parquet")
        pq.write_table(index, index_path)
    settings = DecideSettings(
        work_dir=work,
        seen_keys_dir=str(out / "seen_keys"),
        signatures_dir=str(out / "signatures"),
        run_id="test",
        dedup=dedup,
        neardup=neardup,
        written_index=index_path,
        prior_patterns=patterns,
        shard_bytes=shard_bytes,
    )
    p = TestPipeline()
    decided = p | beam.Create(chunks) | Decide(settings)
    decided.shards | WriteWindows(SinkSettings(str(out), "test", window_seconds))
    result = p.run()
    result.wait_until_finish()

    def read(kind: str) -> list[dict]:
        if not (out / kind).exists():
            return []
        return ds.dataset(str(out / kind), format="parquet").to_table().to_pylist()

    found = {ns: counters(result, ns) for ns in ("dedup", "neardup", "sink")}
    if signed:  # counted by stage A, which this stands in for
        found["neardup"]["signed"] = signed
    return PlaneResult(read("articles"), read("signatures"), read("seen_keys"), found)


def published(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)

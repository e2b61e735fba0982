"""The whole pipeline through the CLI entry point: a loopback HTTP server serves the bundled samples and broken
feeds; the output is read back with pyarrow and DuckDB and checked row by row against the run record."""

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from pipeline.cli import main
from tests.feed_server import FeedServer
from transforms.article import ARTICLE_SCHEMA
from transforms.dead_letter import DEAD_LETTER_SCHEMA

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "configs" / "samples"
SHARED_FEEDS = REPO / ".." / "shared" / "data" / "feeds"

BROKEN_FEEDS = """
  - {name: missing, url: "%(base)s/missing.xml"}
  - {name: page, url: "%(base)s/page.html"}
  - {name: malformed, url: "%(base)s/malformed.xml"}
  - {name: slow, url: "%(base)s/slow.xml"}
"""


def serve_samples_and_broken_feeds(server: FeedServer) -> str:
    """Serve every sample feed (the first one only after a 500) plus broken feeds; returns the config's feed list."""
    lines = []
    for i, path in enumerate(sorted(SAMPLES.iterdir())):
        server.add_file(f"/samples/{path.name}", path, fail_times=1 if i == 0 else 0)
        lines.append(f'  - {{name: {path.stem}, url: "{server.url("/samples/" + path.name)}"}}')
    server.add("/page.html", b"<!doctype html><html><body><h1>Not a feed</h1></body></html>", content_type="text/html")
    server.add(
        "/malformed.xml",
        b"<?xml version='1.0'?><rss><channel><title>x</title><item><title>broken",
        content_type="application/rss+xml",
    )
    server.add("/slow.xml", (SAMPLES / sorted(p.name for p in SAMPLES.iterdir())[0]).read_bytes(), delay=1.5)
    return "\n".join(lines) + BROKEN_FEEDS % {"base": server.base_url}


@pytest.fixture(scope="module")
def served_run(tmp_path_factory):
    """One run of `newsbeam run` against the loopback server; yields (output dir, run record, exit status)."""
    tmp = tmp_path_factory.mktemp("e2e")
    with FeedServer() as server:
        config = tmp / "feeds.yaml"
        config.write_text(
            "feeds:\n"
            + serve_samples_and_broken_feeds(server)
            + "\nfetch: {read_timeout: 0.5, connect_timeout: 1, retries: 1, backoff: 0.05}\n"
        )
        output = tmp / "out"
        status = main(["run", "--config", str(config), "--output", str(output), "--run_id", "e2e-run"])
        assert server.hits("/missing.xml") == 1  # a 404 is not retried
        first_sample = sorted(p.name for p in SAMPLES.iterdir())[0]
        assert server.hits(f"/samples/{first_sample}") == 2  # the 500 was retried
        assert all(r.headers["User-Agent"].startswith("newsbeam/") for r in server.requests)
    record = json.loads((output / "_runs" / "e2e-run.json").read_text())
    return output, record, status


def test_run_succeeds_and_reconciles(served_run):
    output, record, status = served_run
    assert status == 0
    assert record["reconciled"] is True
    assert record["entries_read"] == record["articles_written"] + record["duplicates"] + record["entry_dead_letters"]
    samples = len(list(SAMPLES.iterdir()))
    assert record["feeds_ok"] == samples + 1  # the malformed feed is read: its one entry was salvaged
    assert record["feeds_failed"] == 3  # missing (404), page (not a feed), slow (timeout)
    assert record["feeds_malformed"] == 2  # wire.xml's broken item, and malformed.xml
    assert record["articles_written"] >= 70
    assert record["duplicates"] >= 2  # the syndicated copies
    assert not (output / "_report").exists()  # the HTML report only with --report


def test_articles_read_back_with_pyarrow(served_run):
    output, record, _ = served_run
    table = ds.dataset(str(output / "articles"), format="parquet", partitioning="hive").to_table()
    assert table.num_rows == record["articles_written"]
    for field in ARTICLE_SCHEMA:
        assert table.schema.field(field.name).type == field.type, field.name
    assert table.schema.field("hour").type == pa.int32()
    ids = table.column("article_id").to_pylist()
    assert len(set(ids)) == len(ids)
    assert set(table.column("run_id").to_pylist()) == {"e2e-run"}
    rows = table.to_pylist()
    for row in rows:
        assert row["window_start"] <= row["published_at"] < row["window_end"]
        assert row["date"] == row["window_start"].strftime("%Y-%m-%d")
        assert row["hour"] == row["window_start"].hour
        assert "<p>" not in row["text"]
        # Title-only entries are articles (text_source "none"); every other article has the feed's text.
        assert row["text_source"] == ("feed" if row["text"].strip() else "none") and row["title"].strip()
        assert 0.0 <= row["language_score"] <= 1.0 and 0.0 <= row["topic_score"] <= 1.0
        assert row["date_source"] in {"published", "updated", "fetched"}
    assert len({r["language"] for r in rows}) >= 6
    assert {"published", "fetched"} <= {r["date_source"] for r in rows}
    assert not any("utm_" in r["url"] or "#" in r["url"] for r in rows)


def test_articles_read_back_with_duckdb(served_run):
    output, record, _ = served_run
    con = duckdb.connect()
    total, partitions = con.execute(
        f"select count(*), count(distinct (date, hour)) from "
        f"read_parquet('{output}/articles/**/*.parquet', hive_partitioning=true)"
    ).fetchone()
    assert total == record["articles_written"]
    assert 0 < partitions <= len(record["article_files"])


def test_dead_letters_have_reasons(served_run):
    output, record, _ = served_run
    table = ds.dataset(str(output / "dead_letter"), format="parquet").to_table()
    assert table.schema.equals(DEAD_LETTER_SCHEMA, check_metadata=False)
    reasons = {(r["stage"], r["reason"]) for r in table.to_pylist()}
    assert ("fetch", "http_error") in reasons or ("fetch", "not_found") in reasons
    assert ("fetch", "timeout") in reasons
    assert ("parse", "not_a_feed") in reasons
    assert ("clean", "empty_after_cleaning") not in reasons  # the samples' title-only entries are articles
    assert ("parse", "empty_entry") in reasons
    missing = [r for r in table.to_pylist() if r["feed_url"].endswith("/missing.xml")]
    assert missing and missing[0]["status"] == 404
    assert all(len(r["raw_excerpt"].encode()) <= 4096 for r in table.to_pylist())
    assert sum(record["dead_letters_by_reason"].values()) == table.num_rows


def _row_set(output: Path) -> set:
    table = ds.dataset(str(output / "articles"), format="parquet", partitioning="hive").to_table()
    # An entry without a usable date takes the fetch time, which differs from run to run.
    return {
        (
            r["article_id"],
            r["title"],
            r["text"],
            r["language"],
            r["topic"],
            r["duplicate_count"],
            r["published_at"] if r["date_source"] != "fetched" else None,
        )
        for r in table.to_pylist()
    }


RUNNERS = {
    "multi_processing": ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
    "portable_loopback": ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK"],
}


@pytest.fixture(scope="module")
def in_memory_rows(tmp_path_factory):
    output = tmp_path_factory.mktemp("in_memory")
    assert main(["run", "--output", str(output), "--run_id", "in-memory"]) == 0
    return _row_set(output)


@pytest.mark.parametrize("runner", sorted(RUNNERS))
def test_other_runners_write_the_same_rows(runner, in_memory_rows, tmp_path):
    assert main(["run", "--output", str(tmp_path), "--run_id", runner, *RUNNERS[runner]]) == 0
    assert _row_set(tmp_path) == in_memory_rows


def cli(*args):
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_ours_and_beams_options():
    assert "run" in cli("--help").stdout
    text = cli("run", "--help").stdout
    for option in ("--config", "--output", "--runner", "--direct_num_workers", "--direct_running_mode", "--streaming"):
        assert option in text


def test_bad_config_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("feeds: [{name: a, url: x}]\nwindow: {sise: 1h}\n")
    done = cli("run", "--config", str(bad))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "window.sise" in done.stderr and str(bad) in done.stderr
    assert "Traceback" not in done.stderr
    done = cli("run", "--config", str(tmp_path / "absent.yaml"))
    assert done.returncode == 2 and "not found" in done.stderr


def test_unknown_option_exit_2():
    done = cli("run", "--no-such-option")
    assert done.returncode == 2 and "Traceback" not in done.stderr


@pytest.mark.skipif(not SHARED_FEEDS.is_dir(), reason="../shared is absent")
def test_every_shared_feed_goes_through_reconciled(tmp_path):
    files = sorted(f for f in SHARED_FEEDS.rglob("*") if f.is_file() and not f.name.startswith("LICENSE"))
    config = tmp_path / "shared.yaml"
    config.write_text("feeds:\n" + "".join(f'  - {{name: "{f.stem}", url: "{f}"}}\n' for f in files))
    output = tmp_path / "out"
    assert main(["run", "--config", str(config), "--output", str(output), "--run_id", "shared"]) == 0
    record = json.loads((output / "_runs" / "shared.json").read_text())
    assert record["reconciled"] and record["feeds_configured"] == len(files)
    assert record["articles_written"] > 200


def test_train_topics_then_run_with_the_model(tmp_path):
    """`newsbeam train-topics` on a small CSV writes a model a config can point at; a bad CSV is exit 2."""
    from tests.transforms.test_topic_model import synthetic_rows, write_csv

    data = write_csv(tmp_path / "train.csv", synthetic_rows())
    model = tmp_path / "topics.npz"
    done = cli("train-topics", "--data", str(data), "--out", str(model), "--folds", "3")
    assert done.returncode == 0, done.stderr
    assert "3-fold cross-validated accuracy: " in done.stdout and model.is_file()

    config = tmp_path / "c.yaml"
    config.write_text(
        "feeds:\n"
        + "".join(f'  - {{name: {p.stem}, url: "{p}"}}\n' for p in sorted(SAMPLES.iterdir()))
        + f'classify: {{topic_model: "{model}"}}\n'
    )
    output = tmp_path / "out"
    assert main(["run", "--config", str(config), "--output", str(output), "--run_id", "own-model"]) == 0
    topics = set(ds.dataset(str(output / "articles"), partitioning="hive").to_table().column("topic").to_pylist())
    assert topics & {"sports", "business", "world", "tech"}  # the labels of the trained model

    done = cli("train-topics", "--data", str(tmp_path / "absent.csv"), "--out", str(model))
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_train_language_pair_then_a_bad_pair_model_stops_the_run_at_start(tmp_path):
    """`newsbeam train-language-pair` writes a model the config can list; a corrupt one is exit 2 before any fetch."""
    from tests.transforms.test_language import _pair_sentences

    data = _pair_sentences(tmp_path)
    model = tmp_path / "bs-hr.npz"
    done = cli("train-language-pair", "--data", str(data), "--languages", "bs,hr", "--out", str(model))
    assert done.returncode == 0, done.stderr
    assert "5-fold cross-validated accuracy between bs, hr: 1.0000" in done.stdout and model.is_file()
    done = cli("train-language-pair", "--data", str(data), "--languages", "bs,xx", "--out", str(model))
    assert done.returncode == 2 and "Traceback" not in done.stderr

    feeds = "feeds:\n" + "".join(f'  - {{name: {p.stem}, url: "{p}"}}\n' for p in sorted(SAMPLES.iterdir()))
    config = tmp_path / "c.yaml"
    config.write_text(feeds + f'classify: {{language: {{pair_models: [langid-st-tn.npz, "{model}"]}}}}\n')
    assert main(["run", "--config", str(config), "--output", str(tmp_path / "out"), "--run_id", "pairs"]) == 0

    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(model.read_bytes()[:1000])
    config.write_text(feeds + f'classify: {{language: {{pair_models: ["{corrupt}"]}}}}\n')
    done = cli("run", "--config", str(config), "--output", str(tmp_path / "out2"))
    assert done.returncode == 2 and "language pair model" in done.stderr and "corrupt.npz" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out2" / "articles").exists()

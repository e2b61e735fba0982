"""What a new user does first, on whatever releases the installed venv holds (.ci/run makes one with the newest
releases setup.py allows, and one with the lowest apache-beam it allows): the sample run, a rerun that adds nothing,
the local streaming run with `stop_after` against a loopback feed, and one batch run on the portable runner, whose
rows must be the sample run's. Needs only what `pip install .` installs; run it from outside the checkout so that only
the installed package can be imported.

    python .ci/smoke.py
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import pathlib
import subprocess
import sys
import tempfile
import threading
from email.utils import format_datetime
from xml.sax.saxutils import escape

import pyarrow.dataset as ds

# An entry without a date takes the fetch time: a fixed clock makes two runs' rows comparable.
NOW = ["--now", "2026-11-20T12:00:00Z"]
PORTABLE = ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK"]
# Beam's own complaints about our type hints: any is a failure (issue 20: bare TaggedOutput, NamedTuple outputs).
HINT_WARNINGS = ("TaggedOutput in return type", "output type hint will be ignored", "TypeCheckError")


def newsbeam(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(["newsbeam", *args], capture_output=True, text=True, timeout=900)
    warned = [line for line in done.stderr.splitlines() if any(w in line for w in HINT_WARNINGS)]
    if done.returncode != 0 or warned:
        sys.exit(f"FAILED: newsbeam {' '.join(args)} (exit {done.returncode})\n{done.stdout}\n{done.stderr}")
    return done


def rows(output: pathlib.Path) -> list[tuple]:
    table = ds.dataset(output / "articles", format="parquet", partitioning="hive").to_table(
        columns=["article_id", "url", "title", "text", "language", "topic", "published_at"]
    )
    return sorted(tuple(row.values()) for row in table.to_pylist())


def record(output: pathlib.Path, run_id: str) -> dict:
    return json.loads((output / "_runs" / f"{run_id}.json").read_text())


def rss(now: dt.datetime) -> bytes:
    text = "The harbour authority opened the new ferry terminal on Monday after two years of building work."
    items = "".join(
        f"<item><title>Ferry story {key}</title><link>http://127.0.0.1/{key}</link>"
        f"<pubDate>{format_datetime(now - dt.timedelta(minutes=3 * i))}</pubDate>"
        f"<description>{escape(f'{text} Part {key}.')}</description></item>"
        for i, key in enumerate(("one", "two", "three"))
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Harbour</title>{items}</channel></rss>'.encode()


def serve(body: bytes) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the name http.server calls
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    work = pathlib.Path(tempfile.mkdtemp(prefix="newsbeam-smoke-"))
    import apache_beam
    import pyarrow

    print(f"apache-beam {apache_beam.__version__}, pyarrow {pyarrow.__version__}, Python {sys.version.split()[0]}")

    samples = work / "samples"
    newsbeam("run", "--output", str(samples), "--quiet", "--run_id", "first", *NOW)
    first = record(samples, "first")
    assert first["reconciled"] and first["articles_written"] > 0, first
    assert first["runner"] == "FnApiRunner", first["runner"]
    newsbeam("run", "--output", str(samples), "--quiet", "--all", "--run_id", "second", *NOW)
    assert record(samples, "second")["articles_written"] == 0, "a rerun wrote articles again"
    print(f"sample run: {first['articles_written']} articles, reconciled; rerun added none")

    portable = work / "portable"
    newsbeam("run", "--output", str(portable), "--quiet", *NOW, *PORTABLE)
    assert rows(portable) == rows(samples), "the portable runner wrote other rows than the default runner"
    print("portable runner: the same rows")

    server = serve(rss(dt.datetime.now(dt.timezone.utc)))
    url = f"http://127.0.0.1:{server.server_port}/harbour.xml"
    stream_out = work / "stream"
    config = work / "streaming.yaml"
    config.write_text(
        f"output: {stream_out}\nfeeds:\n  - {{name: Harbour, url: '{url}', language: en}}\n"
        "streaming: {poll_interval: 1s, stop_after: 3s}\n"
    )
    newsbeam("run", "--streaming", "--config", str(config))
    ids = [row[0] for row in rows(stream_out)]
    assert len(ids) == 3 == len(set(ids)), ids
    server.shutdown()
    print("streaming run: 3 articles, each written once")
    print("smoke: all passed")


if __name__ == "__main__":
    main()

"""Hostile feeds, servers and configs through the whole pipeline: one `newsbeam run` against loopback servers that
drip, redirect inward, rate-limit, send impossible dates, lying charsets and dangerous links. The run must end
within its budget, write the good feeds, give every refusal its reason and store nothing from an internal address.
"""

import datetime as dt
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from pipeline import schedule
from pipeline.cli import main
from tests.feed_server import FeedServer
from transforms.sink import partition_path

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "configs" / "samples" / "world.xml"
SECRET = "INTERNAL-ONLY-7f3a"


def rss(*items: str, declaration: str = '<?xml version="1.0" encoding="utf-8"?>') -> str:
    return declaration + '<rss version="2.0"><channel><title>T</title>' + "".join(items) + "</channel></rss>"


def item(title: str, link: str, date: str = "") -> str:
    pub = f"<pubDate>{date}</pubDate>" if date else ""
    return f"<item><title>{title}</title><link>{link}</link>{pub}<description>{title}, in a few words of text.</description></item>"


RUSSIAN = "Правительство объявило новые меры поддержки экономики страны"

# Every failure the run must survive, with the budget that bounds it. Without the deadlines, the drips alone
# would hold the run for minutes, and the 429 would sleep three times 60 s.
FETCH = "fetch: {connect_timeout: 1, read_timeout: 1, total_timeout: 1, feed_budget: 2, retries: 1, backoff: 0.05}"


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    with FeedServer() as server, FeedServer(host="127.0.0.2") as internal:
        internal.add("/secret.xml", rss(item(SECRET, "https://internal.test/secret")))
        server.add_file("/good.xml", SAMPLE)
        server.add("/drip-headers.xml", SAMPLE.read_bytes(), header_delay=0.5)
        server.add("/drip-body.xml", SAMPLE.read_bytes(), chunk_size=16, chunk_delay=0.5)
        server.add("/to-internal.xml", redirect_to=internal.url("/secret.xml"))
        server.add("/to-metadata.xml", redirect_to="http://169.254.169.254/latest/meta-data/")
        server.add("/busy.xml", status=429, retry_after=60)
        server.add(
            "/dates.xml",
            rss(
                item("Far future", "https://d.test/1", "9999-12-31T23:59:59-14:00"),
                item("Year one", "https://d.test/2", "0001-01-01T00:00:00+14:00"),
                item("Before the web", "https://d.test/3", "Mon, 01 Jan 1900 00:00:00 GMT"),
                item("Plain day", "https://d.test/4", "Fri, 20 Nov 2026 10:15:00 GMT"),
            ),
        )
        server.add(
            "/cp1251.xml",
            rss(item(RUSSIAN, "https://r.test/1")).encode("cp1251"),
            content_type="application/rss+xml; charset=utf-8",
        )
        junk = bytes((i * 151 + 7) % 256 for i in range(4000))
        server.add(
            "/junk.xml",
            b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            + b"".join(b"<item><title>" + junk[i * 1000 : (i + 1) * 1000] + b"</title></item>" for i in range(4))
            + b"</channel></rss>",
        )
        server.add(
            "/links.xml",
            rss(
                item("Script link story", "javascript:alert(document.cookie)"),
                item("Data link story", "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="),
                item("Bad port story", "http://host.test:99999/x"),
            ),
        )
        server.add(
            "/year-one.json",
            json.dumps(
                {
                    "version": "https://jsonfeed.org/version/1.1",
                    "items": [
                        {
                            "id": "1",
                            "url": "https://j.test/1",
                            "title": "JSON year one story",
                            "content_text": "Some words of text.",
                            "date_published": "0001-01-01T00:00:00+14:00",
                        },
                    ],
                }
            ),
            content_type="application/feed+json",
        )
        names = [
            "good",
            "drip-headers",
            "drip-body",
            "to-internal",
            "to-metadata",
            "busy",
            "dates",
            "cp1251",
            "junk",
            "links",
        ]
        feeds = [f'  - {{name: {name}, url: "{server.url(f"/{name}.xml")}"}}' for name in names]
        feeds.append(f'  - {{name: year-one, url: "{server.url("/year-one.json")}"}}')
        config = tmp / "hostile.yaml"
        config.write_text("feeds:\n" + "\n".join(feeds) + "\n" + FETCH + "\n")
        output = tmp / "out"
        started = time.monotonic()
        status = main(["run", "--config", str(config), "--output", str(output), "--run_id", "hostile"])
        elapsed = time.monotonic() - started
        internal_hits = internal.hits("/secret.xml")
        busy_hits = server.hits("/busy.xml")
        base = server.base_url
    record = json.loads((output / "_runs" / "hostile.json").read_text())
    return dict(
        output=output,
        status=status,
        elapsed=elapsed,
        record=record,
        internal_hits=internal_hits,
        busy_hits=busy_hits,
        base=base,
    )


def articles(output: Path) -> list[dict]:
    return ds.dataset(str(output / "articles"), format="parquet", partitioning="hive").to_table().to_pylist()


def dead_letters(output: Path) -> list[dict]:
    return ds.dataset(str(output / "dead_letter"), format="parquet").to_table().to_pylist()


def feed_reasons(run: dict) -> dict[str, set]:
    reasons: dict[str, set] = {}
    for letter in dead_letters(run["output"]):
        name = letter["feed_url"].rsplit("/", 1)[-1].split(".")[0]
        reasons.setdefault(name, set()).add((letter["stage"], letter["reason"], bool(letter["entry_key"])))
    return reasons


def test_the_run_ends_within_its_budget_and_reconciles(hostile_run):
    assert hostile_run["status"] == 0
    assert hostile_run["record"]["reconciled"] is True
    # Generous: Beam's own start-up dominates. Without the deadlines this run takes minutes.
    assert hostile_run["elapsed"] < 90


def test_good_feeds_are_written_beside_the_hostile_ones(hostile_run):
    titles = {row["title"] for row in articles(hostile_run["output"])}
    assert len([t for t in titles if "EU border" in t or "border" in t.lower()]) >= 1  # from world.xml
    assert {"Far future", "Year one", "Before the web", "Plain day", "JSON year one story"} <= titles
    assert RUSSIAN in titles


def test_refusals_carry_their_reasons(hostile_run):
    reasons = feed_reasons(hostile_run)
    assert ("fetch", "timeout", False) in reasons["drip-headers"]
    assert ("fetch", "timeout", False) in reasons["drip-body"]
    assert ("fetch", "blocked_address", False) in reasons["to-internal"]
    assert ("fetch", "blocked_address", False) in reasons["to-metadata"]
    assert ("fetch", "rate_limited", False) in reasons["busy"]
    assert reasons["junk"] == {("parse", "bad_encoding", False), ("parse", "bad_encoding", True)}
    for name in ("good", "dates", "cp1251", "links", "year-one"):  # their entries pass fetch and parse
        assert not {r for r in reasons.get(name, set()) if r[0] in ("fetch", "parse")}, name


def test_nothing_from_an_internal_address_is_fetched_or_stored(hostile_run):
    assert hostile_run["internal_hits"] == 0
    stored = [
        json.dumps(row, default=str) for row in articles(hostile_run["output"]) + dead_letters(hostile_run["output"])
    ]
    assert not any(SECRET in row or "169.254" in row and 'meta-data/"' in row for row in stored)
    blocked = [r for r in dead_letters(hostile_run["output"]) if r["reason"] == "blocked_address"]
    assert len(blocked) == 2 and all(r["raw_excerpt"] == "" for r in blocked)


def test_a_rate_limit_moves_the_feed_instead_of_sleeping(hostile_run):
    assert hostile_run["busy_hits"] == 1
    [letter] = [r for r in dead_letters(hostile_run["output"]) if r["reason"] == "rate_limited"]
    assert letter["retry_after_seconds"] == 60
    health = schedule.load_feed_health(str(hostile_run["output"]))[f"{hostile_run['base']}/busy.xml"]
    assert health.next_due_reason in ("Retry-After", "backoff after 1 failure(s)")  # whichever is later
    assert health.next_due_at - health.last_attempt_at >= dt.timedelta(seconds=59)


def test_impossible_dates_fall_back_to_the_fetch_time_in_padded_partitions(hostile_run):
    rows = {row["title"]: row for row in articles(hostile_run["output"])}
    for title in ("Far future", "Year one", "Before the web", "JSON year one story"):
        assert rows[title]["date_source"] == "fetched"
        assert rows[title]["published_at"] == rows[title]["fetched_at"]
    assert rows["Plain day"]["date_source"] == "published"
    partitions = {
        p.relative_to(hostile_run["output"] / "articles").parts[0]
        for p in (hostile_run["output"] / "articles").rglob("*.parquet")
    }
    assert partitions and all(re.fullmatch(r"date=\d{4}-\d{2}-\d{2}", p) for p in partitions)


def test_partition_names_are_zero_padded_for_any_year():
    assert partition_path(dt.datetime(1, 1, 1, tzinfo=dt.timezone.utc), 3600) == "date=0001-01-01/hour=00"
    assert (
        partition_path(dt.datetime(999, 3, 4, 5, 6, tzinfo=dt.timezone.utc), 60) == "date=0999-03-04/hour=05/minute=06"
    )


def test_lying_charsets_are_repaired_and_flagged(hostile_run):
    rows = {row["title"]: row for row in articles(hostile_run["output"])}
    assert rows[RUSSIAN]["encoding_repaired"] is True
    assert rows["Plain day"]["encoding_repaired"] is False


def test_only_http_links_are_stored_as_urls(hostile_run):
    rows = {row["title"]: row for row in articles(hostile_run["output"])}
    for title in ("Script link story", "Data link story", "Bad port story"):
        assert rows[title]["url"] == ""
    assert all(row["url"] == "" or row["url"].startswith(("http://", "https://")) for row in rows.values())


# Config errors: one line, exit 2, before any fetch.


def cli(*args):
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "url, message",
    [
        ("ftp://x", "unsupported scheme ftp://"),
        ("missing.xml", "no such file"),
        ("file:///no/such/feed.xml", "no such file"),
        ("http://host.test:99999/feed", "invalid URL"),
        ("http:///feed", "no host"),
    ],
)
def test_a_bad_feed_is_refused_at_start_up(tmp_path, url, message, capsys):
    config = tmp_path / "feeds.yaml"
    config.write_text(f'feeds:\n  - {{name: ok, url: "https://ok.test/rss"}}\n  - {{name: bad, url: "{url}"}}\n')
    assert main(["run", "--config", str(config), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "feeds[1].url" in err and str(config) in err
    assert not (tmp_path / "out").exists()  # nothing was started


def test_an_output_that_is_a_file_is_one_line_exit_2(tmp_path):
    blocker = tmp_path / "output"
    blocker.write_text("not a directory")
    for output in (blocker, blocker / "sub"):
        done = cli("run", "--output", str(output))
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().count("\n") == 0 and str(output) in done.stderr and "Traceback" not in done.stderr


def test_a_bad_allow_entry_is_a_config_error(tmp_path, capsys):
    config = tmp_path / "feeds.yaml"
    config.write_text(
        'feeds:\n  - {name: ok, url: "https://ok.test/rss"}\nfetch: {allow: ["10.0.0.0/8", "not a host!"]}\n'
    )
    assert main(["run", "--config", str(config), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fetch" in err and "not a host!" in err

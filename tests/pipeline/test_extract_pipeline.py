"""Full article text through `newsbeam run`, twice on the same output: a feed of headlines (title-only entries and
teasers) whose pages are on a loopback server reached as `localhost` (allow-listed by name), one entry linking to
http://127.0.0.1:<other port>/ (not allow-listed: refused), a PDF and a duplicate link. The second run fetches no
page again."""

import json

import pyarrow.dataset as ds
import pytest

from pipeline.cli import main
from pipeline.config import ConfigError, load_config
from pipeline.ingest import extraction_on
from tests.feed_server import FeedServer

PARAGRAPHS = [
    "The regional transport authority announced on Monday that the new tram line will open in March, two months "
    "later than planned, after tests revealed problems with the signalling system on the northern section.",
    "Officials said the delay would not raise the cost of the project, which is funded jointly by the city and "
    "the national government, and that contractors had already begun replacing the faulty equipment.",
]
BUDGET = [
    "Lawmakers approved the state budget late on Thursday by a narrow margin, ending weeks of negotiations over "
    "hospital funding, teacher salaries and a proposed increase in the fuel tax that was eventually dropped.",
    "The governor praised the compromise, while the opposition said the spending plan leaves rural counties "
    "without the money they were promised for broadband and road repairs.",
]


def page(title: str, paragraphs: list[str] = PARAGRAPHS) -> bytes:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        f"<html lang='en'><head><title>{title}</title><link rel='canonical' href='/canonical/{title[:4]}'>"
        f"<meta name='author' content='Ana Lima'></head><body><nav><a href='/'>Home</a></nav>"
        f"<article><h1>{title}</h1>{body}</article><footer>Contact us</footer></body></html>"
    ).encode()


def item(title: str, link: str, description: str = "") -> str:
    desc = f"<description>{description}</description>" if description else ""
    return f"<item><title>{title}</title><link>{link}</link><guid>{link}#{title[:5]}</guid>{desc}</item>"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("extract")
    with FeedServer() as server, FeedServer() as other:
        site = f"http://localhost:{server.port}"
        server.add("/tram", page("Tram line delayed"), content_type="text/html; charset=utf-8")
        server.add("/budget", page("Budget passes", BUDGET), content_type="text/html")
        server.add("/report.pdf", b"%PDF-1.7", content_type="application/pdf")
        other.add("/internal", page("Internal", BUDGET[:1]), content_type="text/html")
        feed = tmp / "headlines.xml"
        feed.write_text(
            "<?xml version='1.0'?><rss version='2.0'><channel><title>Headlines</title>"
            + item("Tram line delayed", f"{site}/tram")
            + item("Tram line delayed until March", f"{site}/tram")  # the same page: fetched once
            + item("Budget passes", f"{site}/budget", "A short teaser.")
            + item("Annual report", f"{site}/report.pdf")
            + item("Internal memo", f"http://127.0.0.1:{other.port}/internal")
            + "</channel></rss>",
            encoding="utf-8",
        )
        config = tmp / "feeds.yaml"
        config.write_text(
            f"feeds:\n  - {{name: Headlines, url: '{feed}', language: en}}\n"
            "extract: {mode: when_short, min_chars: 200, allow_hosts: [localhost], per_host_delay: 0}\n"
        )
        output = tmp / "out"
        records, hits = [], []
        for run in ("first", "second"):
            status = main(["run", "--config", str(config), "--output", str(output), "--run_id", run])
            assert status == 0
            records.append(json.loads((output / "_runs" / f"{run}.json").read_text()))
            hits.append({path: server.hits(path) for path in ("/tram", "/budget", "/report.pdf")})
        hits[-1]["other"] = len(other.requests)
    yield output, records, hits


def test_pages_replace_short_feed_text_and_failures_keep_the_article(two_runs):
    output, records, _ = two_runs
    rows = {
        r["title"]: r
        for r in ds.dataset(str(output / "articles"), format="parquet", partitioning="hive").to_table().to_pylist()
    }
    assert set(rows) == {"Tram line delayed", "Budget passes", "Annual report", "Internal memo"}
    tram, budget = rows["Tram line delayed"], rows["Budget passes"]
    assert tram["text"] == "\n\n".join(PARAGRAPHS) and tram["text_source"] == "page"
    assert tram["summary"] == "" and tram["authors"] == ["Ana Lima"]
    assert tram["canonical_url"].endswith("/canonical/Tram")
    assert (budget["text_source"], budget["summary"]) == ("page", "A short teaser.")
    # Title-only entries whose page failed are still articles, with the feed's (empty) text.
    assert (rows["Annual report"]["text_source"], rows["Annual report"]["text"]) == ("none", "")
    assert rows["Internal memo"]["text_source"] == "none"
    letters = ds.dataset(str(output / "dead_letter"), format="parquet").to_table().to_pylist()
    assert sorted((r["stage"], r["reason"]) for r in letters) == [
        ("extract", "blocked_address"),
        ("extract", "not_html"),
    ]
    first = records[0]
    assert first["reconciled"] is True and first["entry_dead_letters"] == 0 and first["page_dead_letters"] == 2
    assert first["entries_read"] == 5 and first["articles_written"] == 4 and first["duplicates"] == 1


def test_loopback_not_allow_listed_is_never_contacted_and_second_run_fetches_nothing(two_runs):
    _, records, hits = two_runs
    assert hits[0] == {"/tram": 1, "/budget": 1, "/report.pdf": 1}  # two entries link to /tram: one fetch
    assert hits[1] == {"/tram": 1, "/budget": 1, "/report.pdf": 1, "other": 0}
    second = records[1]
    assert second["reconciled"] is True and second["articles_written"] == 0
    assert second["already_written"] + second["duplicates"] == 5


def test_extract_config_section_and_feed_override(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        "feeds:\n  - {name: a, url: a.xml, extract: always}\n  - {name: b, url: b.xml, extract: off}\n"
        "extract: {mode: off, min_chars: 50, per_host_delay: 2s, allow_hosts: [10.0.0.0/8, intranet]}\n"
    )
    loaded = load_config(config)
    assert [f.extract for f in loaded.feeds] == ["always", "off"]  # YAML's bare off is the mode, not false
    assert (loaded.extract.mode, loaded.extract.min_chars, loaded.extract.per_host_delay) == ("off", 50, 2.0)
    assert extraction_on(loaded) and not extraction_on(load_config())
    for bad, key in (("extract: {mode: sometimes}", "extract"), ("extract: {allow_hosts: ['not a host!']}", "extract")):
        config.write_text("feeds:\n  - {name: a, url: a.xml}\n" + bad + "\n")
        with pytest.raises(ConfigError, match=key):
            load_config(config)
    config.write_text("feeds:\n  - {name: a, url: a.xml, extract: maybe}\n")
    with pytest.raises(ConfigError, match=r"feeds\[0\]\.extract"):
        load_config(config)

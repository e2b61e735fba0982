"""`newsbeam report` and `newsbeam run --report`: the page built from real runs' output, opened in headless Chromium
(Debian's `chromium`; the tests skip where it or playwright is missing), and the progress shown while a run works."""

import dataclasses
import datetime as dt
import io
import json
import random
import shutil
import sys
import time
from pathlib import Path

import pytest

from pipeline import schedule
from pipeline.cli import main
from pipeline.layout import OutputLayout
from pipeline.progress import Progress
from pipeline.report import build_report
from pipeline.schedule import FeedHealth

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium driven by playwright (never a browser playwright downloads)."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
    )
    if not CHROMIUM:
        pytest.skip("chromium not found: apt-get install -y chromium (.ci/run installs it)")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@dataclasses.dataclass
class Opened:
    page: object
    text: str
    console_errors: list
    requests: list


def open_report(browser, path: Path, screenshot: Path, width: int = 1200) -> Opened:
    """Load the page from disk, take a full-page screenshot, and return what the browser saw."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    errors, requests = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000  # a rendered page, not a blank one
    return Opened(page, page.inner_text("body"), errors, requests)


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_report_of_the_sample_run_opens_offline_with_its_numbers(tmp_path, browser, monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    output = tmp_path / "out"
    assert main(["run", "--output", str(output), "--run_id", "sample-1", "--report"]) == 0
    monkeypatch.undo()
    record = json.loads((output / "_runs" / "sample-1.json").read_text())

    # Progress was drawn on the "terminal": every feed fetched and the articles of each stage.
    shown = terminal.getvalue().replace("\r", "\n")
    assert f"feeds fetched {record['feeds_configured']}/{record['feeds_configured']}" in shown
    assert f"staged {record['counters']['classify/articles']}" in shown

    path = Path(OutputLayout(str(output)).report_page)
    opened = open_report(browser, path, tmp_path / "sample.png")
    assert opened.console_errors == []
    assert opened.requests == [path.as_uri()]  # nothing but the file itself
    text = opened.text
    assert "Run sample-1, DONE" in text and "reconciled" in text
    for key in ("entries_read", "articles_written", "duplicates", "entry_dead_letters", "rows_in_files"):
        assert f"{record[key]:,}" in text
    for language, n in record["articles_by_language"].items():
        assert f"{language} {n}" in text  # the chart's legend: language and its count
    for topic, n in record["articles_by_topic"].items():
        assert f"{topic} {n}" in text
    for feed in record["feeds"]:
        assert feed["name"] in text
    for reason in record["dead_letters_by_reason"]:
        assert reason.split("/")[1] in text
    assert opened.page.locator("svg.chart").count() >= 7  # 4 run charts, 2 article charts, the rates

    # The feed table sorts by a header click (the inline script ran under the CSP), by name descending twice.
    names = sorted((f["name"] for f in record["feeds"]), key=str.lower)
    header = opened.page.locator("#feeds th", has_text="feed").first
    header.click()
    assert opened.page.locator("#feeds tbody tr").first.inner_text().startswith(names[0])
    header.click()
    assert opened.page.locator("#feeds tbody tr").first.inner_text().startswith(names[-1])
    opened.page.close()


PAYLOADS = (
    '<script>window.__pwned = 1; document.title = "pwned"</script>',
    "<img src=x onerror=\"window.__pwned = 2; document.title = 'pwned'\">",
    "</style><script>window.__pwned = 3</script><style>body{display:none}</style>",
)


def _hostile_feed() -> bytes:
    """An RSS feed whose title and entries carry script and style payloads; cut off mid-item so the parser reports
    it malformed and the raw feed (its title included) lands in the dead letters."""
    escaped = [p.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") for p in PAYLOADS]
    items = "".join(
        f"<item><title>{escaped[i]}</title><link>https://evil.test/{i}</link>"
        f"<description>{escaped[i]}{escaped[(i + 1) % 3]}</description></item>"
        for i in range(3)
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>{escaped[0]}{escaped[2]}</title>'
        f"<link>https://evil.test/</link>{items}<item><title>cut"
    ).encode()


def _ok_feed() -> bytes:
    items = "".join(
        f"<item><title>Harbour story {i} about ferries</title><link>https://ok.test/{i}</link>"
        f"<description>The harbour council met on day {i} to discuss ferry timetables, tram links and the "
        f"new bakery {i * 7} near the station.</description></item>"
        for i in range(4)
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>OK</title>{items}</channel></rss>'.encode()


def test_failing_and_hostile_feeds_show_as_text_and_run_nothing(tmp_path, feed_server, browser, capsys):
    feed_server.add("/ok.xml", _ok_feed(), content_type="application/rss+xml")
    feed_server.add("/down.xml", status=500)
    feed_server.add("/evil.xml", _hostile_feed(), content_type="application/rss+xml")
    evil_name = 'Evil <img src=y onerror="window.__pwned=4"></style>'
    config = tmp_path / "feeds.yaml"
    config.write_text(
        "feeds:\n"
        f'  - {{name: Fine, url: "{feed_server.url("/ok.xml")}", language: en}}\n'
        f'  - {{name: Broken, url: "{feed_server.url("/down.xml")}", language: en}}\n'
        f'  - {{name: {json.dumps(evil_name)}, url: "{feed_server.url("/evil.xml")}", language: en}}\n'
        "fetch: {retries: 0, read_timeout: 5}\n"
    )
    output = tmp_path / "out"
    main(["run", "--config", str(config), "--output", str(output), "--run_id", "h-1", "--quiet"])
    assert "feeds fetched" not in capsys.readouterr().err  # --quiet
    page_path = tmp_path / "report.html"
    assert main(["report", str(output), "--out", str(page_path), "--since", "1d"]) == 0
    html = page_path.read_text()
    assert "<script>window" not in html and 'onerror="window' not in html  # escaped in the file itself

    opened = open_report(browser, page_path, tmp_path / "hostile.png")
    page = opened.page
    assert opened.console_errors == []  # also: no CSP violation, so none of our own style or script was blocked
    assert opened.requests == [page_path.as_uri()]  # no img src=x, y fetched
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.title().startswith("newsbeam report")
    assert page.evaluate("getComputedStyle(document.body).display") == "block"
    assert page.locator("img").count() == 0 and page.locator("script").count() == 1
    for summary in page.locator("#dead details summary").all():
        summary.click()
    text = page.inner_text("body")
    assert evil_name in text  # the name shows as it was written, as text
    assert PAYLOADS[0] in text and 'onerror="window.__pwned = 2' in text and "</style><script>" in text
    # The failing feed: its status, its dead letters.
    broken_row = page.locator("#feeds tbody tr", has_text="Broken").inner_text()
    assert "failing (1x)" in broken_row and "HTTP 500" in broken_row
    assert "http_error" in text and "malformed_feed" in text
    page.close()


def _synthetic_output(output: Path, runs: int, feeds: int, now: dt.datetime) -> None:
    """`runs` run records ten minutes apart and the state of `feeds` feeds, shaped as the pipeline writes them; every
    tenth record in an older shape (fields missing), the newest with fields this report does not know."""
    rng = random.Random(16)
    urls = [f"https://feeds{i % 37}.test/feed/{i}.xml" for i in range(feeds)]
    (output / "_runs").mkdir(parents=True)
    for r in range(runs):
        started = now - dt.timedelta(minutes=10 * (runs - r))
        feed_rows = [
            {
                "name": f"Feed {i}",
                "feed_url": url,
                "polled": (r + i) % 3 == 0,
                "status": 200,
                "failures": 0,
                "new_entries": rng.randint(0, 9),
                "entries_seen": 20,
                "validators": "trusted",
                "last_error": "",
                "next_due_at": "",
            }
            for i, url in enumerate(urls)
        ]
        read = sum(f["new_entries"] for f in feed_rows if f["polled"])
        dup = read // 10
        record = {
            "run_id": f"run-{r:04d}",
            "started_at": started.isoformat(timespec="seconds"),
            "finished_at": (started + dt.timedelta(seconds=rng.randint(20, 90))).isoformat(timespec="seconds"),
            "state": "DONE",
            "entries_read": read,
            "articles_written": read - dup - 2,
            "duplicates": dup,
            "already_written": 0,
            "entry_dead_letters": 2,
            "feed_dead_letters": 1,
            "rows_in_files": read - dup - 2,
            "near_duplicates_dropped": dup // 3,
            "feeds": feed_rows,
            "counters": {"parse/entries_read": read},
            "dead_letters_by_reason": {"clean/empty_after_cleaning": 2, "fetch/http_error": 1},
            "reconciled": True,
        }
        if r % 10 == 5:  # an older record: no near-duplicate fields, no feeds, no end time
            for key in ("near_duplicates_dropped", "feeds", "finished_at", "reconciled"):
                del record[key]
        if r == runs - 1:  # fields added by later versions
            record["entries_skipped_already_written"] = 4321
            record["page_dead_letters"] = {"extract/too_large": 3}
        (output / "_runs" / f"run-{r:04d}.json").write_text(json.dumps(record))
    health = [
        FeedHealth(
            feed_url=url,
            etag='"e"',
            validators_trusted=i % 5 != 0,
            validators_note="" if i % 5 else "changed body under the same ETag",
            last_success_at=now - dt.timedelta(hours=i % 48),
            last_attempt_at=now,
            consecutive_failures=i % 7 == 0 and 3 or 0,
            last_status=200,
            last_error="connection refused" if i % 7 == 0 else "",
            total_new_entries=i * 10,
            next_due_at=now + dt.timedelta(minutes=i % 60),
            next_due_reason="poll interval",
        )
        for i, url in enumerate(urls)
    ]
    schedule.save_feed_health(str(output), health)


def test_a_thousand_runs_and_500_feeds_stay_small(tmp_path, browser):
    now = dt.datetime(2026, 11, 20, 12, 7, 30, tzinfo=dt.timezone.utc)  # any instant: the report is told its now
    output = tmp_path / "big"
    _synthetic_output(output, runs=1000, feeds=500, now=now)
    started = time.process_time()
    page = build_report(str(output), now=now)
    cpu = time.process_time() - started
    assert cpu < 30  # loose: the bound (it takes a few seconds on a loaded 2-core machine)
    assert len(page.encode()) < 5 * 1024 * 1024
    path = tmp_path / "big.html"
    path.write_text(page)

    opened = open_report(browser, path, tmp_path / "big.png", width=390)  # a phone's width
    assert opened.console_errors == [] and opened.requests == [path.as_uri()]
    assert opened.page.locator("#feeds tbody tr").count() == 500
    assert "1000" in opened.text.replace(",", "")  # runs in the period
    assert "entries skipped already written" in opened.text and "4,321" in opened.text  # an unknown field, shown
    failing = sum(1 for i in range(500) if i % 7 == 0)
    assert f"{failing} failing" in opened.text
    opened.page.close()


def test_progress_off_a_terminal_prints_one_line_a_minute_at_most():
    clock = [0.0]
    out = io.StringIO()
    progress = Progress(7, lambda: {"feeds": 3, "staged": 40}, stream=out, clock=lambda: clock[0])
    for t in (0, 20, 59, 61, 90, 120, 122, 150, 185):
        clock[0] = t
        progress.poll()
    lines = out.getvalue().splitlines()
    assert lines == [
        "newsbeam: progress after 61s: feeds 3/7 · staged 40 · kept 0 · dead letters 0",
        "newsbeam: progress after 122s: feeds 3/7 · staged 40 · kept 0 · dead letters 0",
        "newsbeam: progress after 185s: feeds 3/7 · staged 40 · kept 0 · dead letters 0",
    ]


def test_progress_is_quiet_with_quiet_even_on_a_terminal():
    terminal = _Terminal()
    with Progress(7, lambda: {"feeds": 7}, stream=terminal, quiet=True, tick=0.01) as progress:
        progress.poll()
        time.sleep(0.05)
    assert terminal.getvalue() == ""


def test_progress_reads_a_finished_pipelines_beam_counters():
    import apache_beam as beam
    from apache_beam.metrics import Metrics

    from pipeline.progress import beam_counts

    def count(x):
        Metrics.counter("classify", "articles").inc()
        Metrics.counter("fetch", "feeds_ok" if x % 2 else "feeds_failed").inc()
        return x

    pipeline = beam.Pipeline()
    _ = pipeline | beam.Create(range(5)) | beam.Map(count)
    result = pipeline.run()
    result.wait_until_finish()
    assert beam_counts(result) == {"feeds": 5, "staged": 5, "kept": 0, "dead letters": 0}


def test_report_command_line_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert main(["report", str(tmp_path), "--since", "a week"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "no such output" in err[0] and "--since" in err[1]

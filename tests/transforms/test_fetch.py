"""FetchFeeds and fetch_feed against a real HTTP server on 127.0.0.1 (tests/feed_server.py)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import socket
import time

import apache_beam as beam
import pytest
import requests
from apache_beam.testing import test_pipeline  # not the class by name: pytest would try to collect it
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import counter, open_files_under
from tests.feed_server import FeedServer
from transforms import spool
from transforms.clock import UTC
from transforms.dead_letter import DEAD_LETTER_TAG, DeadLetter
from transforms.feed import FeedSource
from transforms.fetch import FetchFeedFn, FetchFeeds, FetchSettings, backoff_delay, fetch_feed, make_session
from transforms.fetching import FetchError
from transforms.spool import SpooledBody

RSS = (
    '<?xml version="1.0" encoding="iso-8859-1"?>\n'
    '<rss version="2.0"><channel><title>Caf\xe9 news</title>'
    "<item><title>Cr\xe8me</title><link>https://example.org/a</link></item></channel></rss>\n"
).encode("iso-8859-1")
ATOM = b'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title></feed>\n'

# Small numbers keep every failure path well under a second; the server delays are ~1-2 s at most.
FAST = FetchSettings(connect_timeout=1.0, read_timeout=0.5, total_timeout=5.0, retries=3, backoff=0.01)


class Sleeps(list):
    """An injectable sleep that records what it was asked to wait instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def fetch(url: str, settings: FetchSettings = FAST, sleep=None) -> object:
    return fetch_feed(FeedSource(name="test", url=url), settings, sleep=Sleeps() if sleep is None else sleep)


def fetch_error(url: str, settings: FetchSettings = FAST, sleep=None) -> FetchError:
    with pytest.raises(FetchError) as caught:
        fetch(url, settings, sleep)
    return caught.value


def unused_port() -> int:
    """A loopback port with nothing listening on it (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# fetch_feed over HTTP


def test_200_keeps_body_and_content_type_with_charset(feed_server):
    feed_server.add(
        "/feed.xml",
        RSS,
        content_type="application/rss+xml; charset=ISO-8859-1",
        etag='"v1"',
        headers={"Cache-Control": "max-age=300", "X-Other": "dropped"},
    )
    feed = fetch(feed_server.url("/feed.xml"))
    assert feed.status == 200
    assert feed.url == feed_server.url("/feed.xml")
    assert feed.body == RSS
    assert feed.content_type == "application/rss+xml; charset=ISO-8859-1"
    assert feed.fetched_at.tzinfo is not None and feed.fetched_at.utcoffset() == dt.timedelta(0)
    assert dict(feed.headers) == {
        "Content-Type": "application/rss+xml; charset=ISO-8859-1",
        "ETag": '"v1"',
        "Cache-Control": "max-age=300",
    }


def test_user_agent_and_accept_are_sent(feed_server):
    feed_server.add("/feed.xml", RSS)
    fetch(feed_server.url("/feed.xml"))
    (request,) = feed_server.requests
    assert request.headers["User-Agent"] == FAST.user_agent
    assert request.headers["User-Agent"].startswith("newsbeam/")
    assert "application/rss+xml" in request.headers["Accept"]


# Big enough to take many reads, compressed or not.
LONG_FEED = b"<rss><channel>%s</channel></rss>" % b"".join(b"<item><title>%d</title></item>" % i for i in range(40_000))


def test_gzip_body_is_decoded(feed_server):
    feed_server.add("/feed.xml", LONG_FEED, gzip=True)
    feed = fetch(feed_server.url("/feed.xml"))
    assert feed.body == LONG_FEED
    assert "gzip" in feed_server.requests[0].headers["Accept-Encoding"]
    assert ("Content-Encoding", "gzip") not in feed.headers


@pytest.mark.parametrize("gzip", [False, True])
def test_chunked_body_is_read_whole(feed_server, gzip):
    feed_server.add("/feed.xml", LONG_FEED, chunked=True, chunk_size=5000, gzip=gzip)
    assert fetch(feed_server.url("/feed.xml")).body == LONG_FEED


def test_500_then_success_is_retried_with_backoff(feed_server):
    feed_server.add("/flaky", RSS, fail_times=2)
    sleeps = Sleeps()
    feed = fetch(feed_server.url("/flaky"), sleep=sleeps)
    assert feed.body == RSS
    assert feed_server.hits("/flaky") == 3
    # Exponential with jitter: attempt n waits between half and all of backoff * 2**n.
    assert len(sleeps) == 2
    assert 0.005 <= sleeps[0] <= 0.01 and 0.01 <= sleeps[1] <= 0.02


def test_permanent_500_fails_after_all_retries(feed_server):
    feed_server.add("/broken", status=500)
    err = fetch_error(feed_server.url("/broken"), FetchSettings(retries=2, backoff=0.01))
    assert (err.reason, err.status) == ("http_error", 500)
    assert feed_server.hits("/broken") == 3
    assert "3 attempts" in err.message


def test_404_fails_at_once(feed_server):
    err = fetch_error(feed_server.url("/missing"))
    assert (err.reason, err.status) == ("http_error", 404)
    assert feed_server.hits("/missing") == 1


def test_redirect_chain_within_the_cap_is_followed(feed_server):
    feed_server.add("/feed.xml", RSS)
    feed_server.add("/r3", redirect_to="/feed.xml", redirect_status=308)
    feed_server.add("/r2", redirect_to=feed_server.url("/r3"), redirect_status=301)  # absolute Location
    feed_server.add("/r1", redirect_to="/r2")
    feed = fetch(feed_server.url("/r1"), FetchSettings(max_redirects=3))
    assert feed.url == feed_server.url("/feed.xml")
    assert feed.body == RSS
    assert [request.path for request in feed_server.requests] == ["/r1", "/r2", "/r3", "/feed.xml"]


def test_redirect_chain_over_the_cap_fails(feed_server):
    feed_server.add("/feed.xml", RSS)
    feed_server.add("/r3", redirect_to="/feed.xml")
    feed_server.add("/r2", redirect_to="/r3")
    feed_server.add("/r1", redirect_to="/r2")
    err = fetch_error(feed_server.url("/r1"), FetchSettings(max_redirects=2))
    assert err.reason == "too_many_redirects"
    assert feed_server.hits("/feed.xml") == 0


def test_redirect_loop_fails(feed_server):
    feed_server.add("/a", redirect_to="/b")
    feed_server.add("/b", redirect_to="/a")
    assert fetch_error(feed_server.url("/a")).reason == "too_many_redirects"


def test_redirect_to_a_local_file_is_refused(feed_server, tmp_path):
    secret = tmp_path / "secret.xml"
    secret.write_bytes(RSS)
    feed_server.add("/sneaky", redirect_to=secret.as_uri())
    err = fetch_error(feed_server.url("/sneaky"))
    assert (err.reason, err.status) == ("unsupported_scheme", 302)


def test_429_is_not_waited_for_in_the_run(feed_server):
    # Retry-After goes to the dead letter, where feed health turns it into the feed's next due time.
    feed_server.add("/busy", RSS, status=429, retry_after=60)
    sleeps = Sleeps()
    err = fetch_error(feed_server.url("/busy"), sleep=sleeps)
    assert (err.reason, err.status, err.retry_after) == ("rate_limited", 429, 60.0)
    assert sleeps == []
    assert feed_server.hits("/busy") == 1


def test_429_without_retry_after_is_rate_limited_at_once(feed_server):
    feed_server.add("/busy", status=429)
    err = fetch_error(feed_server.url("/busy"))
    assert (err.reason, err.status, err.retry_after) == ("rate_limited", 429, None)
    assert feed_server.hits("/busy") == 1


def test_503_with_a_short_retry_after_is_waited_for(feed_server):
    feed_server.add("/busy", RSS, fail_times=1, fail_status=503, retry_after=2)
    sleeps = Sleeps()
    feed = fetch(feed_server.url("/busy"), sleep=sleeps)
    assert feed.body == RSS
    assert sleeps == [2.0]
    assert feed_server.hits("/busy") == 2


def test_503_with_retry_after_date_over_the_cap_goes_to_the_schedule(feed_server):
    soon = dt.datetime.now(UTC) + dt.timedelta(seconds=30)
    http_date = soon.strftime("%a, %d %b %Y %H:%M:%S GMT")
    feed_server.add("/busy", RSS, fail_times=1, fail_status=503, retry_after=http_date)
    sleeps = Sleeps()
    err = fetch_error(feed_server.url("/busy"), FetchSettings(max_retry_after=10), sleep=sleeps)
    assert (err.reason, err.status) == ("rate_limited", 503)
    assert 20 <= err.retry_after <= 31
    assert sleeps == []


def test_a_wait_that_does_not_fit_the_feed_budget_is_not_taken(feed_server):
    feed_server.add("/busy", RSS, fail_times=1, fail_status=503, retry_after=8)
    sleeps = Sleeps()
    err = fetch_error(feed_server.url("/busy"), FetchSettings(max_retry_after=10, feed_budget=5), sleep=sleeps)
    assert (err.reason, err.status, err.retry_after) == ("http_error", 503, 8.0)
    assert sleeps == []


def test_slow_response_over_read_timeout_is_a_timeout(feed_server):
    feed_server.add("/slow", RSS, delay=1.5)
    err = fetch_error(feed_server.url("/slow"), FetchSettings(read_timeout=0.3, retries=0))
    assert err.reason == "timeout"


def test_trickling_body_over_total_timeout_is_a_timeout(feed_server):
    # Each chunk arrives well within read_timeout, so only the whole-attempt deadline can stop it.
    feed_server.add("/trickle", RSS * 20, chunk_size=64, chunk_delay=0.05)
    err = fetch_error(feed_server.url("/trickle"), FetchSettings(read_timeout=0.5, total_timeout=0.3, retries=0))
    assert err.reason == "timeout"


def test_dripping_headers_end_within_the_feed_budget(feed_server):
    # One header byte every 0.1 s never trips read_timeout; the run must still be free after feed_budget.
    feed_server.add("/drip", RSS, header_delay=0.1)
    settings = FetchSettings(read_timeout=1, total_timeout=0.4, feed_budget=1.0, retries=5, backoff=0.01)
    started = time.monotonic()
    err = fetch_error(feed_server.url("/drip"), settings, sleep=time.sleep)
    assert err.reason == "timeout"
    assert time.monotonic() - started < 4  # generous: the point is that it does not hang
    assert 2 <= feed_server.hits("/drip") <= 4  # retried within the budget, not 6 times


def test_dripping_body_without_content_length_is_not_taken_as_complete(feed_server):
    feed_server.add("/drip", RSS * 20, chunk_size=16, chunk_delay=0.05, content_length=False)
    err = fetch_error(feed_server.url("/drip"), FetchSettings(read_timeout=1, total_timeout=0.3, retries=0))
    assert err.reason == "timeout"


def test_body_over_size_cap_is_too_large(feed_server):
    feed_server.add("/big", b"x" * 5000)
    feed_server.add("/big-unsized", b"x" * 5000, content_length=False)
    settings = FetchSettings(max_bytes=1000)
    assert fetch_error(feed_server.url("/big"), settings).reason == "too_large"
    assert fetch_error(feed_server.url("/big-unsized"), settings).reason == "too_large"


def test_gzip_bomb_is_too_large(feed_server):
    feed_server.add("/bomb", b"\0" * (8 * 1024 * 1024), gzip=True)  # ~8 KiB on the wire
    err = fetch_error(feed_server.url("/bomb"), FetchSettings(max_bytes=1024 * 1024))
    assert (err.reason, err.status) == ("too_large", 200)


# Spooling (the per-feed loop's fetch): a body over spool_bytes goes to a temporary file, under the same cap and
# refusals; a body that fails leaves no file behind.

SPOOL = dataclasses.replace(FAST, spool_bytes=4096)


def spool_fetch(url: str, settings: FetchSettings = SPOOL):
    return fetch_feed(FeedSource(name="test", url=url), settings, sleep=Sleeps(), spool=True)


@pytest.mark.parametrize(("gzip", "chunked"), [(False, False), (True, False), (False, True)])
def test_a_body_over_spool_bytes_is_spooled_whole(feed_server, spool_dir, gzip, chunked):
    feed_server.add("/feed.xml", LONG_FEED, gzip=gzip, chunked=chunked, chunk_size=5000)
    feed = spool_fetch(feed_server.url("/feed.xml"))
    assert isinstance(feed.body, SpooledBody) and spool.whole(feed.body) == LONG_FEED
    assert len(open_files_under(spool_dir)) == 1
    feed.close()
    assert open_files_under(spool_dir) == []


def test_a_body_under_spool_bytes_and_a_304_stay_in_memory(feed_server, spool_dir):
    feed_server.add("/small.xml", RSS)
    feed_server.add("/cached.xml", LONG_FEED, etag='"v1"')
    assert spool_fetch(feed_server.url("/small.xml")).body == RSS
    source = FeedSource(name="test", url=feed_server.url("/cached.xml"), etag='"v1"')
    feed = fetch_feed(source, SPOOL, spool=True)
    assert (feed.status, feed.body) == (304, b"")
    assert open_files_under(spool_dir) == []


def test_spooled_bodies_keep_the_size_cap_and_leave_no_file(feed_server, spool_dir):
    feed_server.add("/big-unsized", b"x" * 50_000, content_length=False)
    feed_server.add("/bomb", b"\0" * (8 * 1024 * 1024), gzip=True)
    settings = dataclasses.replace(SPOOL, max_bytes=20_000)
    assert fetch_error_spooled(feed_server.url("/big-unsized"), settings).reason == "too_large"
    err = fetch_error_spooled(feed_server.url("/bomb"), dataclasses.replace(SPOOL, max_bytes=1024 * 1024))
    assert (err.reason, err.status) == ("too_large", 200)
    assert open_files_under(spool_dir) == []


def test_a_body_cut_off_after_it_was_spooled_leaves_no_file(feed_server, spool_dir):
    feed_server.add("/drip", RSS * 20, chunk_size=16, chunk_delay=0.05, content_length=False)
    settings = FetchSettings(read_timeout=1, total_timeout=0.5, retries=0, spool_bytes=64)
    assert fetch_error_spooled(feed_server.url("/drip"), settings).reason == "timeout"
    assert open_files_under(spool_dir) == []


def test_a_local_file_over_spool_bytes_is_spooled(tmp_path, spool_dir):
    path = tmp_path / "big.xml"
    path.write_bytes(LONG_FEED)
    feed = spool_fetch(str(path))
    assert isinstance(feed.body, SpooledBody) and spool.whole(feed.body) == LONG_FEED
    feed.close()
    over = dataclasses.replace(SPOOL, max_bytes=len(LONG_FEED) - 1)
    assert fetch_error_spooled(str(path), over).reason == "too_large"
    assert open_files_under(spool_dir) == []


def fetch_error_spooled(url: str, settings: FetchSettings) -> FetchError:
    with pytest.raises(FetchError) as caught:
        spool_fetch(url, settings)
    return caught.value


def test_connection_refused_is_a_connection_error():
    sleeps = Sleeps()
    err = fetch_error(f"http://127.0.0.1:{unused_port()}/feed.xml", FetchSettings(retries=2), sleep=sleeps)
    assert (err.reason, err.status) == ("connection_error", None)
    assert len(sleeps) == 2


def test_unsupported_scheme_fails():
    assert fetch_error("ftp://example.org/feed.xml").reason == "unsupported_scheme"


def test_shared_session_pools_the_connection(feed_server):
    feed_server.add("/feed.xml", RSS)
    feed_server.add("/other.xml", LONG_FEED, gzip=True)
    with make_session(FAST) as session:
        for path in ("/feed.xml", "/other.xml", "/feed.xml"):
            fetch_feed(FeedSource("test", feed_server.url(path)), FAST, session)
    assert len({request.client for request in feed_server.requests}) == 1


# SSRF: what a redirect may reach (tests/transforms/test_netguard.py covers the guard itself)


def test_configured_intranet_feed_is_fetched_and_may_redirect_to_itself(feed_server):
    feed_server.add("/old", redirect_to="/feed.xml")
    feed_server.add("/feed.xml", RSS)
    assert fetch(feed_server.url("/old")).body == RSS


def test_redirect_to_another_internal_address_is_blocked_without_a_body(feed_server):
    with FeedServer(host="127.0.0.2") as internal:
        internal.add("/secret", b"<rss>internal</rss>")
        feed_server.add("/feed.xml", redirect_to=internal.url("/secret"))
        sleeps = Sleeps()
        err = fetch_error(feed_server.url("/feed.xml"), sleep=sleeps)
        assert err.reason == "blocked_address"
        assert "127.0.0.2" in err.message
        assert sleeps == []  # not retried
        assert internal.hits("/secret") == 0


@pytest.mark.parametrize(
    "target",
    # The feed itself is on 127.0.0.1 (an intranet feed), so only other internal addresses are off limits.
    ["http://169.254.169.254/latest/meta-data/", "http://2130706434:1/", "http://0x7f.2:1/", "http://[::1]:1/"],
)
def test_redirect_to_metadata_and_numeric_internal_forms_is_blocked(feed_server, target):
    feed_server.add("/feed.xml", redirect_to=target)
    assert fetch_error(feed_server.url("/feed.xml")).reason == "blocked_address"


def test_allow_setting_opens_an_internal_redirect_target(feed_server):
    with FeedServer(host="127.0.0.2") as internal:
        internal.add("/feed.xml", RSS)
        feed_server.add("/old", redirect_to=internal.url("/feed.xml"))
        settings = dataclasses.replace(FAST, allow=("127.0.0.2",))
        assert fetch(feed_server.url("/old"), settings).body == RSS


def test_bad_allow_entry_is_refused_when_settings_are_made():
    with pytest.raises(ValueError, match="not a host"):
        FetchSettings(allow=("10.0.0.0/33x",))


# fetch_feed on local files


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("feed.atom", "application/atom+xml"),
        ("feed.rss", "application/rss+xml"),
        ("feed.json", "application/feed+json"),
        ("feed.xml", "application/xml"),
    ],
)
def test_local_path_is_read_with_a_guessed_content_type(tmp_path, name, content_type):
    path = tmp_path / name
    path.write_bytes(ATOM)
    feed = fetch(str(path))
    assert (feed.body, feed.status, feed.content_type, feed.url) == (ATOM, None, content_type, str(path))


def test_file_url_is_read(tmp_path):
    path = tmp_path / "my feed.atom"  # a space, so the URL is percent-encoded
    path.write_bytes(ATOM)
    feed = fetch(path.as_uri())
    assert (feed.body, feed.status, feed.content_type) == (ATOM, None, "application/atom+xml")


def test_missing_local_file_fails(tmp_path):
    assert fetch_error(str(tmp_path / "nope.xml")).reason == "file_not_found"
    assert fetch_error((tmp_path / "nope.xml").as_uri()).reason == "file_not_found"


def test_local_file_over_size_cap_is_too_large(tmp_path):
    path = tmp_path / "big.xml"
    path.write_bytes(b"x" * 2000)
    assert fetch_error(str(path), FetchSettings(max_bytes=1000)).reason == "too_large"


# Helpers


def test_backoff_delay_grows_and_stays_in_its_jitter_band():
    assert backoff_delay(0.5, 0, rand=lambda: 0.0) == 0.25
    assert backoff_delay(0.5, 0, rand=lambda: 1.0) == 0.5
    assert backoff_delay(0.5, 3, rand=lambda: 1.0) == 4.0


# The DoFn and the composite


def test_unexpected_exception_becomes_a_dead_letter():
    class ExplodingSession(requests.Session):
        def get(self, *args, **kwargs):
            raise RuntimeError("boom")

    raised_at = ExplodingSession.get.__code__.co_firstlineno + 1  # the dead letter names the line that raised
    fn = FetchFeedFn(FAST)
    fn._session = ExplodingSession()  # instead of setup(): stands in for a bug anywhere below fetch_feed
    (output,) = fn.process(FeedSource("x", "http://127.0.0.1:1/feed.xml"))
    fn.teardown()
    assert output.tag == DEAD_LETTER_TAG
    letter = output.value
    assert (letter.stage, letter.reason, letter.message, letter.run_id) == (
        "fetch",
        "unexpected_error",
        f"RuntimeError: boom (at test_fetch.py:{raised_at} in get)",
        "",  # no stage stamps the run id: WriteDeadLetters does, when it writes the row
    )


def test_fetch_feeds_routes_good_feeds_and_dead_letters(feed_server, tmp_path):
    feed_server.add("/good.xml", RSS, content_type="application/rss+xml; charset=ISO-8859-1")
    feed_server.add("/broken", status=500)
    local = tmp_path / "local.atom"
    local.write_bytes(ATOM)
    refused = f"http://127.0.0.1:{unused_port()}/feed.xml"
    sources = [
        FeedSource("good", feed_server.url("/good.xml")),
        FeedSource("local", str(local)),
        FeedSource("missing", feed_server.url("/missing")),
        FeedSource("broken", feed_server.url("/broken")),
        FeedSource("refused", refused),
        FeedSource("gone", str(tmp_path / "gone.xml")),
    ]
    settings = FetchSettings(connect_timeout=1.0, read_timeout=0.5, retries=1, backoff=0.01)

    p = test_pipeline.TestPipeline()
    fetched = p | beam.Create(sources) | FetchFeeds(settings)
    assert_that(
        fetched.feeds | "FeedKeys" >> beam.Map(lambda feed: (feed.source.name, feed.url, feed.status, feed.body)),
        equal_to([("good", feed_server.url("/good.xml"), 200, RSS), ("local", str(local), None, ATOM)]),
        label="Feeds",
    )
    assert_that(
        fetched.dead_letters
        | "LetterKeys" >> beam.Map(lambda d: (d.feed_url, d.stage, d.reason, d.status, d.entry_key, d.run_id)),
        equal_to(
            [
                (feed_server.url("/missing"), "fetch", "http_error", 404, "", ""),
                (feed_server.url("/broken"), "fetch", "http_error", 500, "", ""),
                (refused, "fetch", "connection_error", None, "", ""),
                (str(tmp_path / "gone.xml"), "fetch", "file_not_found", None, "", ""),
            ]
        ),
        label="DeadLetters",
    )
    assert_that(
        fetched.dead_letters | "Typed" >> beam.Map(lambda d: isinstance(d, DeadLetter) and d.time is not None),
        equal_to([True] * 4),
        label="DeadLetterTypes",
    )
    result = p.run()
    result.wait_until_finish()

    names = (
        "feeds_ok",
        "feeds_failed",
        "bytes",
        "failed_http_error",
        "failed_connection_error",
        "failed_file_not_found",
    )
    assert [counter(result, f"fetch/{name}") for name in names] == [2, 4, len(RSS) + len(ATOM), 2, 1, 1]
    assert feed_server.hits("/broken") == 2
    assert feed_server.hits("/missing") == 1

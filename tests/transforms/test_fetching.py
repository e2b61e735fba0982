"""transforms.fetching: what the feed and page fetchers share, read over real HTTP on 127.0.0.1."""

import datetime as dt

import pytest
import requests

from transforms.clock import UTC
from transforms.fetching import FetchError, read_capped, retry_after_seconds

BODY = b"<p>" + b"news " * 2000 + b"</p>"  # 10,007 bytes


def _get(server, path: str) -> requests.Response:
    return requests.get(server.url(path), stream=True, timeout=5)


@pytest.mark.parametrize("options", [{}, {"gzip": True}, {"chunked": True, "content_length": False}])
def test_a_body_under_the_cap_is_read_whole(feed_server, options):
    feed_server.add("/body", BODY, **options)
    with _get(feed_server, "/body") as response:
        assert read_capped(response, len(BODY)) == (BODY, False)


@pytest.mark.parametrize(
    "options, said",
    [({}, "Content-Length"), ({"chunked": True, "content_length": False}, "decoded"), ({"gzip": True}, "decoded")],
)
def test_past_the_cap_a_body_is_refused_by_default(feed_server, options, said):
    feed_server.add("/body", BODY, **options)
    with _get(feed_server, "/body") as response, pytest.raises(FetchError) as caught:
        read_capped(response, 4096)
    assert (caught.value.reason, caught.value.status) == ("too_large", 200) and said in caught.value.message


@pytest.mark.parametrize("options", [{}, {"chunked": True, "content_length": False}])
def test_past_the_cap_keep_start_keeps_the_first_bytes(feed_server, options):
    feed_server.add("/body", BODY, **options)
    with _get(feed_server, "/body") as response:
        assert read_capped(response, 4096, keep_start=True) == (BODY[:4096], True)


def test_a_gzip_bomb_is_cut_by_its_decoded_size(feed_server):
    bomb = b"\0" * (64 * 1024 * 1024)  # 64 MB of zeros: about 64 KB compressed
    feed_server.add("/bomb", bomb, gzip=True)
    with _get(feed_server, "/bomb") as response, pytest.raises(FetchError) as caught:
        read_capped(response, 1024 * 1024)
    assert caught.value.reason == "too_large"
    with _get(feed_server, "/bomb") as response:
        body, cut = read_capped(response, 1024 * 1024, keep_start=True)
    assert (len(body), cut) == (1024 * 1024, True)


def test_retry_after_seconds_reads_both_forms():
    now = dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("120", now) == 120.0
    assert retry_after_seconds("Wed, 01 May 2024 12:01:30 GMT", now) == 90.0
    assert retry_after_seconds("Wed, 01 May 2024 11:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None

"""FetchFeeds: download each configured feed (HTTP(S) or a local file) and hand its raw bytes to ParseEntries.

`fetch_feed` does the work for one `FeedSource` and is usable without Beam: a hard wall-clock deadline per attempt
(connect, TLS, headers and body, whatever the server does) and a budget per feed across retries, a cap on the
decoded body size (so a gzip bomb is refused too), a capped number of redirects, retries with exponential
backoff and jitter on transient failures. A rate limit (429) or a Retry-After longer than `max_retry_after` is not
waited for inside the run: the dead letter carries the wait, and feed health moves the feed's next due time.

Every connection goes through transforms/netguard/: no hop of a redirect chain may reach a non-public address
(loopback, private, link-local, metadata, ...) unless `fetch.allow` lists it. A feed configured with a non-public
address (an intranet feed) is allowed, and so are its redirects back to that host. Every failure is a `FetchError`
(transforms/fetching.py, shared with the page fetcher) with a short snake_case `reason`; FetchFeeds turns it into a
feed-level `DeadLetter`.

    python -m pytest tests/transforms/test_fetch.py -q
"""

from __future__ import annotations

import dataclasses
import random
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import apache_beam as beam
import requests
from apache_beam.metrics import Metrics

from transforms import __version__, netguard
from transforms.clock import utcnow
from transforms.counters import FEEDS_FAILED, FEEDS_OK, counter
from transforms.dead_letter import DEAD_LETTER_TAG, DeadLetter, DeadLetterOutput, dead_letter_on_error, reject
from transforms.feed import FeedSource, FetchedFeed
from transforms.fetching import FetchError, TransientFetchError, read_capped, retry_after_seconds
from transforms.spool import BodySink

STAGE = "fetch"

# Response headers worth keeping: caching validators for conditional GET, and what the parser needs.
INTERESTING_HEADERS = ("Content-Type", "ETag", "Last-Modified", "Cache-Control", "Retry-After")

# Formats we can parse first; anything else last, since many servers label feeds text/html or text/plain.
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/json;q=0.9, "
    "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.8"
)

_LOCAL_CHUNK_BYTES = 1 << 20
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_RATE_LIMIT_STATUSES = frozenset({429, 503})

_LOCAL_CONTENT_TYPES = {
    ".rss": "application/rss+xml",
    ".atom": "application/atom+xml",
    ".json": "application/feed+json",
    ".rdf": "application/rdf+xml",
}


@dataclasses.dataclass(frozen=True)
class FetchSettings:
    """Tunables of FetchFeeds (the `fetch:` section of the config). Times are in seconds."""

    connect_timeout: float = dataclasses.field(default=5.0, metadata={"unit": "seconds"})
    read_timeout: float = dataclasses.field(default=20.0, metadata={"unit": "seconds"})
    # A server that trickles bytes never trips read_timeout; this bounds one attempt as a whole, headers included.
    total_timeout: float = dataclasses.field(default=60.0, metadata={"unit": "seconds"})
    # All attempts of one feed together, waits between them included: the most one feed can hold a worker.
    feed_budget: float = dataclasses.field(default=120.0, metadata={"unit": "seconds"})
    max_bytes: int = 10 * 1024 * 1024
    # A body larger than this waits in a temporary file (in TMPDIR) while its entries are read, not in memory (the
    # per-feed loop, pipeline/plane/feeds.py): a feed of 100,000 entries held whole was most of a run's peak memory.
    # Below it, reading from memory costs nothing extra. 0: always in memory.
    spool_bytes: int = 4 * 1024 * 1024
    max_redirects: int = 5
    retries: int = 3
    backoff: float = dataclasses.field(default=0.5, metadata={"unit": "seconds"})
    # A 503's Retry-After up to this is waited for (within feed_budget); longer ones go to the feed's schedule.
    max_retry_after: float = dataclasses.field(default=10.0, metadata={"unit": "seconds"})
    # Non-public hosts, IPs and CIDR networks any feed may reach (e.g. an intranet host a public feed redirects to).
    allow: tuple[str, ...] = ()
    user_agent: str = f"newsbeam/{__version__} (+https://github.com/newsbeam/newsbeam)"

    def __post_init__(self):
        netguard.AllowList.parse(self.allow)  # ValueError names a bad entry when the config is read


class Fetched(NamedTuple):
    """What FetchFeeds returns: the fetched feeds, and a dead letter for each feed that failed."""

    feeds: beam.PCollection
    dead_letters: beam.PCollection


def make_session(settings: FetchSettings) -> requests.Session:
    """A pooled, guarded `requests.Session` (netguard) with our User-Agent and Accept headers."""
    # No urllib3 Retry or session.max_redirects: fetch_feed follows redirects (to refuse non-HTTP targets and
    # close each hop unread) and retries itself (to honour Retry-After and report why it gave up).
    session = netguard.guarded_session(settings.user_agent, netguard.AllowList.parse(settings.allow))
    session.headers["Accept"] = ACCEPT
    return session


def intranet_allow(url: str) -> netguard.AllowList:
    """What a configured feed URL adds to the allow list: its own host and addresses when any is non-public.

    The user chose that URL, so an intranet feed is fetched; its redirects may come back to the same host, but
    may not wander to other internal addresses. A public feed adds nothing.
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if not host:
        return netguard.AllowList()
    try:
        infos = netguard.resolve(host, parts.port or 80, timeout=5.0)
    except (OSError, ValueError):
        return netguard.AllowList()  # the connect will fail and say why
    addresses = {info[4][0].split("%", 1)[0] for info in infos}
    if all(netguard.is_public_address(address) for address in addresses):
        return netguard.AllowList()
    return netguard.AllowList.parse([host, *addresses])


def fetch_feed(
    source: FeedSource,
    settings: FetchSettings = FetchSettings(),
    session: requests.Session | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
    spool: bool = False,
) -> FetchedFeed:
    """Fetch one feed, retrying transient failures; raise `FetchError` when it cannot be had.

    `session` is reused when given (FetchFeeds passes one per worker); `sleep` is injectable for tests. With
    `spool`, a body over `settings.spool_bytes` is a SpooledBody (a temporary file) and the caller must `close()`
    the FetchedFeed once it is read; without, the body is always bytes (a FetchedFeed that crosses a Beam boundary).
    """
    spool_over = settings.spool_bytes if spool and settings.spool_bytes > 0 else None
    scheme = urllib.parse.urlsplit(source.url).scheme.lower()
    if scheme in ("http", "https"):
        with netguard.allowing(intranet_allow(source.url)):
            if session is not None:
                return _fetch_http(source, settings, session, sleep, spool_over)
            with make_session(settings) as own_session:
                return _fetch_http(source, settings, own_session, sleep, spool_over)
    if scheme == "file":
        return _read_local(source, _file_url_path(source.url), settings, spool_over)
    if scheme == "":
        return _read_local(source, Path(source.url), settings, spool_over)
    raise FetchError("unsupported_scheme", f"cannot fetch {scheme}:// URLs")


def backoff_delay(base: float, attempt: int, rand: Callable[[], float] = random.random) -> float:
    """Exponential backoff with jitter: between half and all of `base * 2**attempt`.

    Jitter keeps many workers that failed together from retrying in lockstep.
    """
    ceiling = base * (2**attempt)
    return ceiling / 2 + rand() * ceiling / 2


def _fetch_http(
    source: FeedSource,
    settings: FetchSettings,
    session: requests.Session,
    sleep: Callable[[float], None],
    spool_over: int | None,
) -> FetchedFeed:
    budget_end = time.monotonic() + settings.feed_budget
    attempt = 0
    while True:
        budget = min(settings.total_timeout, budget_end - time.monotonic())
        try:
            if budget <= 0:
                raise TransientFetchError("timeout", f"feed budget of {settings.feed_budget:g}s spent")
            try:
                with netguard.Deadline(budget):
                    return _fetch_once(source, settings, session, spool_over)
            except netguard.DeadlineExceeded as err:
                raise TransientFetchError(
                    "timeout", f"no complete answer from {source.url} within {budget:.3g}s"
                ) from err
        except TransientFetchError as err:
            delay = err.retry_after if err.retry_after is not None else backoff_delay(settings.backoff, attempt)
            if attempt >= settings.retries or time.monotonic() + delay >= budget_end:
                raise FetchError(
                    err.reason, f"{err.message} (after {attempt + 1} attempts)", err.status, err.retry_after
                ) from err
            attempt += 1
            sleep(delay)


def _fetch_once(
    source: FeedSource, settings: FetchSettings, session: requests.Session, spool_over: int | None
) -> FetchedFeed:
    """One attempt: follow up to max_redirects redirects, then read the body under the size cap.

    Runs inside a netguard.Deadline, which bounds the whole attempt in wall-clock time.
    """
    url = source.url
    for _ in range(settings.max_redirects + 1):
        response = _get(session, url, settings, _conditional_headers(source))
        try:
            if response.status_code in _REDIRECT_STATUSES and "location" in response.headers:
                url = _redirect_target(session, response)
                continue
            _check_status(response, settings)
            if response.status_code == 304:
                body = b""
            else:
                body = read_capped(response, settings.max_bytes, spool_over=spool_over)[0]
            return FetchedFeed(
                source=source,
                url=response.url,
                status=response.status_code,
                content_type=response.headers.get("Content-Type", ""),
                body=body,
                fetched_at=utcnow(),
                headers=tuple(
                    (name, response.headers[name]) for name in INTERESTING_HEADERS if name in response.headers
                ),
            )
        finally:
            response.close()
    raise FetchError("too_many_redirects", f"more than {settings.max_redirects} redirects (last to {url})")


def _conditional_headers(source: FeedSource) -> dict[str, str]:
    headers = {}
    if source.etag:
        headers["If-None-Match"] = source.etag
    if source.last_modified:
        headers["If-Modified-Since"] = source.last_modified
    return headers


def _get(session: requests.Session, url: str, settings: FetchSettings, headers: dict[str, str]) -> requests.Response:
    try:
        return session.get(
            url,
            headers=headers,
            stream=True,  # so the size cap applies before the whole body is in memory
            allow_redirects=False,
            timeout=(settings.connect_timeout, settings.read_timeout),
        )
    except netguard.BlockedAddress as err:
        raise FetchError(netguard.REASON, f"refused {url}: {err}") from err
    except requests.exceptions.Timeout as err:  # before ConnectionError: ConnectTimeout is both
        raise TransientFetchError("timeout", f"no answer from {url} in time: {err}") from err
    except requests.exceptions.SSLError as err:  # a bad certificate will not fix itself in a second
        raise FetchError("ssl_error", str(err)) from err
    except requests.exceptions.ConnectionError as err:
        raise TransientFetchError("connection_error", f"cannot connect to {url}: {err}") from err
    except requests.exceptions.InvalidURL as err:  # e.g. no host, bad port: the scheme was checked already
        raise FetchError("invalid_url", str(err)) from err
    except requests.exceptions.RequestException as err:
        raise FetchError("request_error", f"{type(err).__name__}: {err}") from err


def _redirect_target(session: requests.Session, response: requests.Response) -> str:
    # get_redirect_target undoes the latin-1 mangling of non-ASCII Location headers.
    location = session.get_redirect_target(response) or ""
    target = urllib.parse.urljoin(response.url, location)
    if urllib.parse.urlsplit(target).scheme.lower() not in ("http", "https"):
        # Never let a remote server point us at file:// or another local resource.
        raise FetchError(
            "unsupported_scheme", f"redirect from {response.url} to non-HTTP {target}", response.status_code
        )
    return target


def _check_status(response: requests.Response, settings: FetchSettings) -> None:
    status = response.status_code
    if 200 <= status < 300 or status == 304:
        return
    where = f"HTTP {status} {response.reason or ''}".rstrip() + f" from {response.url}"
    if status in _RATE_LIMIT_STATUSES:
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        if status == 429:  # asked to slow down: the next try belongs to the feed's schedule, not this run
            raise FetchError("rate_limited", where, status, wait)
        if wait is not None and wait > settings.max_retry_after:
            raise FetchError(
                "rate_limited",
                f"{where}: Retry-After {wait:.0f}s exceeds {settings.max_retry_after:.0f}s",
                status,
                wait,
            )
        raise TransientFetchError("http_error", where, status, retry_after=wait)
    if status >= 500:
        raise TransientFetchError("http_error", where, status)
    raise FetchError("http_error", where, status)


def _file_url_path(url: str) -> Path:
    parts = urllib.parse.urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise FetchError("unsupported_scheme", f"file URL on another host: {url}")
    return Path(urllib.request.url2pathname(parts.path))


def local_content_type(path: Path) -> str:
    """The content type we assume for a local feed file, from its extension."""
    return _LOCAL_CONTENT_TYPES.get(path.suffix.lower(), "application/xml")


def _read_local(source: FeedSource, path: Path, settings: FetchSettings, spool_over: int | None) -> FetchedFeed:
    # Copied (to memory or a spool) rather than read in place: the feed is read as it was when fetched.
    try:
        with open(path, "rb") as handle, BodySink(spool_over) as sink:
            # Up to one byte over the cap, which tells us the file is too large.
            while sink.size <= settings.max_bytes:
                chunk = handle.read(min(_LOCAL_CHUNK_BYTES, settings.max_bytes + 1 - sink.size))
                if not chunk:
                    break
                sink.write(chunk)
            if sink.size > settings.max_bytes:
                raise FetchError("too_large", f"{path} exceeds {settings.max_bytes} bytes")
            body = sink.result()
    except FileNotFoundError as err:
        raise FetchError("file_not_found", f"no such file: {path}") from err
    except OSError as err:
        raise FetchError("file_error", f"cannot read {path}: {err.strerror or err}") from err
    return FetchedFeed(
        source=source,
        url=source.url,
        status=None,
        content_type=local_content_type(path),
        body=body,
        fetched_at=utcnow(),
    )


def unexpected_error(source: FeedSource, err: Exception) -> DeadLetter:
    """The dead letter of a feed whose fetch raised something other than a FetchError: a bug or a library surprise
    costs one feed, never the run."""
    counter(FEEDS_FAILED).inc()
    Metrics.counter(STAGE, "failed_unexpected_error").inc()
    return reject(STAGE, "unexpected_error", feed_url=str(source.url), error=err)


class FetchFeedFn(beam.DoFn):
    """Fetches each FeedSource; failures go to DEAD_LETTER_TAG. One pooled Session per DoFn instance.

    With `spool` (the per-feed loop, which reads the feed in the same process), a big body is a temporary file the
    caller closes; FetchFeeds' FetchedFeeds cross a Beam boundary, so their bodies stay bytes.
    """

    def __init__(self, settings: FetchSettings, spool: bool = False):
        self._settings = settings
        self._spool = spool
        self._session: requests.Session | None = None
        self._ok = counter(FEEDS_OK)
        self._failed = counter(FEEDS_FAILED)
        self._bytes = Metrics.counter(STAGE, "bytes")

    def setup(self):
        self._session = make_session(self._settings)

    @dead_letter_on_error(unexpected_error)
    def process(self, source: FeedSource) -> Iterator[FetchedFeed | DeadLetterOutput]:
        try:
            feed = fetch_feed(source, self._settings, self._session, spool=self._spool)
        except FetchError as err:  # blocked_address among them: a refused target never has a body to keep
            yield self._dead_letter(source, err.reason, err.message, err.status, err.retry_after)
            return
        self._ok.inc()
        self._bytes.inc(len(feed.body))
        yield feed

    def teardown(self):
        if self._session is not None:
            try:
                self._session.close()
            except Exception:  # noqa: BLE001 - teardown is best effort; the worker is going away anyway
                pass
            self._session = None

    def _dead_letter(
        self, source: FeedSource, reason: str, message: str, status: int | None, retry_after: float | None = None
    ):
        self._failed.inc()
        Metrics.counter(STAGE, f"failed_{reason}").inc()
        letter = reject(
            STAGE, reason, feed_url=str(source.url), message=message, status=status, retry_after_seconds=retry_after
        )
        return beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, letter)


class FetchFeeds(beam.PTransform):
    """FeedSource -> Fetched(feeds: FetchedFeed, dead_letters: DeadLetter)."""

    def __init__(self, settings: FetchSettings = FetchSettings()):
        super().__init__()
        self._settings = settings

    def expand(self, sources):
        fetched = (
            sources
            # The source list comes from one Create; without this, one worker would fetch every feed.
            | "SpreadFeeds" >> beam.Reshuffle()
            | "Fetch" >> beam.ParDo(FetchFeedFn(self._settings)).with_outputs(DEAD_LETTER_TAG, main="feeds")
        )
        return Fetched(fetched.feeds, fetched[DEAD_LETTER_TAG])

"""Full article text: fetch the page each new entry links to and extract its article body, politely and safely.

- `wants_page(article, mode, min_chars)`: whether an entry's page is wanted (the `extract:` modes).
- `PageFetcher.fetch(url)`: one page through the SSRF guard (transforms/netguard.py: every hop checked, and again
  at connect time), politely: per-host connection limit and delay (`HostLimiter`), robots.txt cached per origin,
  Retry-After on 429/503, a hard wall-clock deadline, a size cap, HTML content types only. Never raises: a
  `PageResult` carries the page or the dead-letter reason; its text and metadata come from `extract_page`
  (transforms/page_html.py).
- `apply_page(article, result)`: the article with its page's text and metadata, or unchanged plus a dead letter.
- `ArticlePages.fetch_chunk(articles, written_keys)`: the pages a chunk of articles wants, one fetch per URL over a
  thread pool, merged back. It is a step of the per-feed loop (pipeline/plane/feeds.py), between parse and clean,
  not a Beam composite: a page is fetched while the feed's articles are in hand.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import html
import re
import threading
import time
import urllib.parse
import urllib.robotparser
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import requests
from apache_beam.metrics import Metrics

from transforms import __version__
from transforms.article import Article, identity_keys
from transforms.clock import utcnow
from transforms.dead_letter import PAGE_STAGE, DeadLetter, reject
from transforms.fetching import FetchError, read_capped, retry_after_seconds
from transforms.netguard import (
    AllowList,
    BlockedAddress,
    Deadline,
    DeadlineExceeded,
    check_url,
    guarded_session,
)
from transforms.page_html import ExtractedPage, extract_page

# What holds where: the per-host limits (connections and delay) and the robots.txt cache live in one PageFetcher per
# worker process and run (`shared_fetcher`), which every ArticlePages (one per DoFn instance, one of those per SDK
# worker thread) of that process uses. With several worker processes (Dataflow workers, DirectRunner
# multi_processing) each keeps its own: two workers may each open `per_host_connections` to a host. A URL is fetched
# once per ArticlePages (it remembers the pages it fetched): two feeds that link one page and are finished by
# different DoFn instances each fetch it.

MODES = ("off", "when_short", "always")
USER_AGENT = f"newsbeam/{__version__} (+https://github.com/newsbeam/newsbeam)"
HTML_TYPES = ("text/html", "application/xhtml+xml")
ACCEPT_HTML = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1"
ROBOTS_DISALLOWED = "robots_disallowed"
PAGE_FETCH_ERROR = "page_fetch_error"
NOT_HTML = "not_html"
EXTRACTION_FAILED = "extraction_failed"
BLOCKED_ADDRESS = "blocked_address"


@dataclasses.dataclass(frozen=True)
class ExtractSettings:
    """The `extract:` section of the config. Times are in seconds.

    `mode`: `off` (default: the main job runs offline), `when_short` (fetch the page when the feed's own text has
    fewer than `min_chars` characters) or `always`; a feed's `extract:` overrides it. `allow_hosts`: non-public
    hosts, IPs or CIDR networks pages may be fetched from anyway (an intranet; tests' 127.0.0.1).
    """

    mode: str = "off"
    min_chars: int = 400
    allow_hosts: tuple[str, ...] = ()
    per_host_connections: int = 2
    per_host_delay: float = dataclasses.field(default=1.0, metadata={"unit": "seconds"})
    threads: int = 16
    batch_size: int = 64
    connect_timeout: float = dataclasses.field(default=5.0, metadata={"unit": "seconds"})
    read_timeout: float = dataclasses.field(default=15.0, metadata={"unit": "seconds"})
    # One page exchange (DNS, connect, headers, body) as a whole: a server dripping bytes cannot hold a thread.
    total_timeout: float = dataclasses.field(default=30.0, metadata={"unit": "seconds"})
    # Bytes read of a page (after gzip); the rest is not downloaded, and the part read is still extracted.
    max_bytes: int = 5 * 1024 * 1024
    max_redirects: int = 5
    # 429/503 with a Retry-After up to this long are retried once after waiting; longer ones are a fetch error.
    max_retry_after: float = dataclasses.field(default=30.0, metadata={"unit": "seconds"})
    robots: bool = True
    user_agent: str = USER_AGENT

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        object.__setattr__(self, "allow_hosts", tuple(self.allow_hosts))
        AllowList.parse(self.allow_hosts)  # a bad entry fails at start-up
        for name in ("per_host_connections", "threads", "batch_size", "max_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("min_chars", "max_redirects", "per_host_delay", "max_retry_after"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


_TAG = re.compile(r"<[^>]*>")


def feed_text_chars(markup: str) -> int:
    """Characters of visible text in a feed's markup, roughly (tags dropped, entities decoded, spaces folded)."""
    return len(" ".join(html.unescape(_TAG.sub(" ", markup or "")).split()))


def wants_page(article: Article, mode: str, min_chars: int) -> bool:
    """True when `mode` asks for the page of `article` (which must link to an http(s) page)."""
    if mode == "off" or not article.url.lower().startswith(("http://", "https://")):
        return False
    return mode == "always" or feed_text_chars(article.text) < min_chars


@dataclasses.dataclass(frozen=True)
class PageResult:
    """The outcome of fetching one page: `page` on success, else `reason` (a dead-letter reason) and `message`."""

    url: str
    final_url: str = ""
    status: int | None = None
    page: ExtractedPage | None = None
    reason: str = ""
    message: str = ""
    retry_after: float | None = None
    truncated: bool = False


class HostLimiter:
    """At most `connections` requests in flight per host, and request starts at least `delay` seconds apart."""

    def __init__(
        self,
        connections: int,
        delay: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._connections, self._delay, self._clock, self._sleep = connections, delay, clock, sleep
        self._lock = threading.Lock()
        self._slots: dict[str, threading.Semaphore] = {}
        self._next: dict[str, float] = {}

    @contextlib.contextmanager
    def slot(self, host: str):
        """Hold one of `host`'s connections, after waiting for its turn."""
        with self._lock:
            semaphore = self._slots.setdefault(host, threading.BoundedSemaphore(self._connections))
        with semaphore:
            with self._lock:
                now = self._clock()
                start = max(now, self._next.get(host, now))
                self._next[host] = start + self._delay
            if start > now:
                self._sleep(start - now)
            yield

    def push_back(self, host: str, seconds: float) -> None:
        """No request to `host` for `seconds` (a Retry-After)."""
        with self._lock:
            self._next[host] = max(self._next.get(host, 0.0), self._clock() + seconds)


class PageFetcher:
    """Fetches pages politely (per-host limits, robots.txt, Retry-After) through the SSRF guard. Thread-safe."""

    def __init__(self, settings: ExtractSettings, sleep: Callable[[float], None] = time.sleep):
        self._settings = settings
        self._allow = AllowList.parse(settings.allow_hosts)
        self._session = guarded_session(settings.user_agent, self._allow, pool_maxsize=settings.threads)
        self._session.headers["Accept"] = ACCEPT_HTML
        self._limiter = HostLimiter(settings.per_host_connections, settings.per_host_delay, sleep=sleep)
        self._sleep = sleep
        self._robots: dict[str, urllib.robotparser.RobotFileParser | None] = {}
        self._robots_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self._session.close()

    def fetch(self, url: str) -> PageResult:
        """Fetch and extract one page; never raises."""
        try:
            return self._fetch(url)
        except FetchError as err:
            return PageResult(
                url, status=err.status, reason=err.reason, message=err.message, retry_after=err.retry_after
            )
        except BlockedAddress as err:
            return PageResult(url, reason=BLOCKED_ADDRESS, message=str(err))
        except (DeadlineExceeded, requests.Timeout) as err:
            return PageResult(url, reason=PAGE_FETCH_ERROR, message=f"timeout: {err}")
        except (requests.RequestException, OSError, ValueError) as err:
            # requests wraps a BlockedAddress raised at connect time; the dead letter must say what it was.
            if _caused_by(err, BlockedAddress):
                return PageResult(url, reason=BLOCKED_ADDRESS, message=str(_caused_by(err, BlockedAddress)))
            return PageResult(url, reason=PAGE_FETCH_ERROR, message=f"{type(err).__name__}: {err}"[:500])

    def _fetch(self, url: str) -> PageResult:
        s = self._settings
        current, redirects, retried = url, 0, False
        while True:
            check_url(current, self._allow)  # every hop, before anything is sent; the session checks again at connect
            if s.robots and not self._robots_allow(current):
                raise FetchError(ROBOTS_DISALLOWED, f"robots.txt disallows {current[:300]}")
            host = (urllib.parse.urlsplit(current).hostname or "").lower()
            wait = None
            with self._limiter.slot(host), Deadline(s.total_timeout):
                response = self._session.get(
                    current, timeout=(s.connect_timeout, s.read_timeout), stream=True, allow_redirects=False
                )
                with response:
                    status = response.status_code
                    if status in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                        redirects += 1
                        if redirects > s.max_redirects:
                            raise FetchError(PAGE_FETCH_ERROR, f"more than {s.max_redirects} redirects", status)
                        current = urllib.parse.urljoin(current, response.headers["Location"])
                        continue
                    if status in (429, 503):
                        wait = retry_after_seconds(response.headers.get("Retry-After"))
                        if wait is not None:
                            self._limiter.push_back(host, wait)
                        if retried or wait is None or wait > s.max_retry_after:
                            raise FetchError(PAGE_FETCH_ERROR, f"HTTP {status}", status, wait)
                    elif status >= 400:
                        raise FetchError(PAGE_FETCH_ERROR, f"HTTP {status}", status)
                    else:
                        content_type = response.headers.get("Content-Type", "")
                        media = content_type.split(";")[0].strip().lower()
                        if media not in HTML_TYPES:
                            raise FetchError(NOT_HTML, f"Content-Type {media or '(none)'} is not HTML", status)
                        body, truncated = read_capped(response, s.max_bytes, keep_start=True)
                        try:
                            page = extract_page(body, current, content_type)
                        except Exception as err:  # noqa: BLE001 - a page no parser copes with is a dead letter
                            raise FetchError(EXTRACTION_FAILED, f"{type(err).__name__}: {err}"[:300], status) from err
                        if not page.text:
                            raise FetchError(EXTRACTION_FAILED, f"no article text found in {len(body)} bytes", status)
                        return PageResult(url, current, status, page, truncated=truncated)
            # Retry-After: once, after waiting outside the host's slot (the wait does not hold a connection).
            retried = True
            self._sleep(wait)

    def _robots_allow(self, url: str) -> bool:
        parts = urllib.parse.urlsplit(url)
        origin = f"{parts.scheme.lower()}://{parts.netloc.lower()}"
        with self._lock:
            lock = self._robots_locks.setdefault(origin, threading.Lock())
        with lock:  # one robots.txt fetch per origin and run, however many threads ask
            if origin not in self._robots:
                self._robots[origin] = self._fetch_robots(origin)
        parser = self._robots[origin]
        return parser is None or parser.can_fetch(self._settings.user_agent, url)

    def _fetch_robots(self, origin: str) -> urllib.robotparser.RobotFileParser | None:
        """The parsed robots.txt of `origin`; None (everything allowed) when it has none (4xx) or cannot be read."""
        s = self._settings
        parser = urllib.robotparser.RobotFileParser(origin + "/robots.txt")
        host = (urllib.parse.urlsplit(origin).hostname or "").lower()
        try:
            check_url(origin + "/robots.txt", self._allow)
            with self._limiter.slot(host), Deadline(s.total_timeout):
                # Redirects are followed by the guarded session: each hop is checked at connect time.
                response = self._session.get(
                    origin + "/robots.txt", timeout=(s.connect_timeout, s.read_timeout), stream=True
                )
                with response:
                    if response.status_code >= 500:
                        parser.disallow_all = True  # RFC 9309: an unreachable robots.txt means "disallow all"
                        return parser
                    if response.status_code >= 400:
                        return None
                    body, _ = read_capped(response, 512 * 1024, keep_start=True)
        except (FetchError, BlockedAddress, DeadlineExceeded, requests.RequestException, OSError, ValueError):
            return None  # the page fetch that follows reports what is wrong with the host
        parser.parse(body.decode("utf-8", "replace").splitlines())
        return parser


def _caused_by(err: BaseException, kind: type) -> BaseException | None:
    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, kind):
            return err
        if err.args and isinstance(err.args[0], BaseException) and err.args[0] is not err:
            nested = _caused_by(err.args[0], kind)
            if nested is not None:
                return nested
        err = err.__cause__ or err.__context__
        seen += 1
    return None


def apply_page(article: Article, result: PageResult) -> tuple[Article, DeadLetter | None]:
    """The article with its page's text and metadata (or unchanged, with a dead letter, when the page failed).

    The feed's own text moves to `summary`; the page fills the canonical URL, and the authors, language hint and
    published date only where the feed had none (a page date later than a day after the fetch is not trusted).
    """
    if result.page is None:
        letter = reject(
            PAGE_STAGE,
            result.reason,
            article=article,
            entry_key=article.url,
            status=result.status,
            retry_after_seconds=result.retry_after,
            message=f"{result.url}: {result.message}",
        )
        return article, letter
    page = result.page
    changes: dict = {
        "text": page.text,
        "summary": article.text,
        "text_source": "page",
        "canonical_url": page.canonical_url,
    }
    if not article.authors and page.authors:
        changes["authors"] = page.authors
    if not article.declared_language and page.language:
        changes["declared_language"] = page.language
    fetched = article.fetched_at or utcnow()
    if (
        article.date_source == "fetched"
        and page.published_at is not None
        and page.published_at <= fetched + dt.timedelta(days=1)
    ):
        changes["published_at"] = page.published_at
        changes["date_source"] = "page"
    return dataclasses.replace(article, **changes), None


_FETCHERS: dict[tuple[ExtractSettings, str], PageFetcher] = {}
_FETCHERS_LOCK = threading.Lock()


def shared_fetcher(settings: ExtractSettings, run_id: str) -> PageFetcher:
    """The PageFetcher of this process for one run: its host limits and robots.txt cache hold process-wide."""
    with _FETCHERS_LOCK:
        key = (settings, run_id)
        if key not in _FETCHERS:
            if len(_FETCHERS) >= 8:  # a long-lived process (tests, a notebook) running run after run
                _FETCHERS.pop(next(iter(_FETCHERS))).close()
            _FETCHERS[key] = PageFetcher(settings)
        return _FETCHERS[key]


class ArticlePages:
    """Fetches the pages a chunk of articles wants and merges each into its article: the page step of the per-feed
    loop (pipeline/plane/feeds.py `FeedProcessor`), which both graphs run.

    An article's page is wanted when its feed's mode (`modes`: feed URL -> mode, else the settings' mode) asks for
    it (`wants_page`) and none of its identity keys is among `written_keys` (the id and URL keys of the entries an
    earlier run wrote: dedup drops those, so their pages are not fetched again). Each URL is fetched once, over a
    thread pool of `threads`, through this process's PageFetcher (`shared_fetcher`); a URL this instance fetched
    before is not fetched again. Counted under `extract/`: pages_fetched, pages_extracted, pages_truncated,
    pages_cached, pages_skipped_already_written and one counter per outcome (`ok` or the dead-letter reason).

        pages = ArticlePages(settings, modes, run_id); pages.setup()
        articles, letters = pages.fetch_chunk(articles, written_keys)
    """

    def __init__(self, settings: ExtractSettings, modes: Mapping[str, str] | None = None, run_id: str = ""):
        self._settings, self._modes, self._run_id = settings, dict(modes or {}), run_id
        self._counters = {
            name: Metrics.counter(PAGE_STAGE, name)
            for name in ("pages_fetched", "pages_extracted", "pages_truncated", "pages_cached")
        }
        self._skipped_written = Metrics.counter(PAGE_STAGE, "pages_skipped_already_written")

    def setup(self) -> None:
        """Builds the thread pool and takes the process's fetcher (call once, in a DoFn's setup)."""
        self._fetcher = shared_fetcher(self._settings, self._run_id)
        self._pool = concurrent.futures.ThreadPoolExecutor(self._settings.threads, thread_name_prefix="page")
        self._pages: dict[str, PageResult] = {}

    def teardown(self) -> None:
        """Stops the thread pool (best effort: a page still in flight is abandoned)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def fetch_chunk(
        self, articles: Sequence[Article], written_keys: np.ndarray | None = None
    ) -> tuple[list[Article], list[DeadLetter]]:
        """The articles, in order, each with its page where it was wanted and fetched, and the dead letters of the
        pages that failed (those articles go on unchanged). `written_keys`: sorted key hashes (article.key_hash)
        of the id and URL keys already written."""
        settings = self._settings
        wanted: dict[str, list[int]] = {}
        for i, article in enumerate(articles):
            mode = self._modes.get(article.feed_url) or settings.mode
            if not wants_page(article, mode, settings.min_chars):
                continue
            keys = [key for _, key in identity_keys(article)]  # the id and URL: no content hash yet
            if written_keys is not None and len(written_keys) and np.isin(keys, written_keys).any():
                self._skipped_written.inc()
                continue
            wanted.setdefault(article.url, []).append(i)
        futures = {url: self._pool.submit(self._fetcher.fetch, url) for url in wanted if url not in self._pages}
        out, letters = list(articles), []
        for url, rows in wanted.items():
            if url in futures:
                result = self._pages[url] = futures[url].result()
                self._counters["pages_fetched"].inc()
                self._counters["pages_extracted"].inc(result.page is not None)
                self._counters["pages_truncated"].inc(result.truncated)
                Metrics.counter(PAGE_STAGE, result.reason or "ok").inc()
            else:
                result = self._pages[url]
                self._counters["pages_cached"].inc()
            for i in rows:
                out[i], letter = apply_page(articles[i], result)
                if letter is not None:
                    letters.append(letter)
        if len(self._pages) > 10000:  # a long streaming job: the memory of pages seen is bounded
            self._pages.clear()
        return out, letters

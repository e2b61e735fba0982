"""FetchArticlePages: fetch the page each new entry links to and extract its article body, politely and safely.

Pure functions, usable without Beam:

- `decode_html(body, content_type)`: the page as text, its charset taken from the Content-Type header, else a byte
  order mark, else a `<meta charset>` / `http-equiv` tag near the top, else UTF-8 if the bytes are valid UTF-8,
  else detection (charset_normalizer).
- `extract_page(html, url, content_type)`: an `ExtractedPage` with the body text (transforms/page_text.py, on a
  tree parsed once), the canonical URL (`<link rel=canonical>`, else `og:url`), the published date, the authors and
  a language hint, read from meta tags and JSON-LD. `python benchmarks/extract.py` scores it.

- `PageFetcher.fetch(url)`: one page through the SSRF guard (transforms/netguard.py: every hop checked, and again
  at connect time), politely: per-host connection limit and delay (`HostLimiter`), robots.txt cached per origin,
  Retry-After on 429/503, a hard wall-clock deadline, a size cap, HTML content types only. Never raises: a
  `PageResult` carries the page or the dead-letter reason.
- `apply_page(article, result)`: the article with its page's text and metadata, or unchanged plus a dead letter.

`FetchArticlePages` (under "The stage") selects the entries whose page is wanted (per-feed mode, not written by an
earlier run), groups them by URL, fetches in parallel within each worker and merges the pages back.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import html
import json
import re
import threading
import time
import urllib.parse
import urllib.robotparser
from collections.abc import Callable, Iterable, Iterator
from typing import Literal
from urllib.parse import urljoin

import apache_beam as beam
import lxml.etree
import lxml.html
import requests
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.utils.windowed_value import WindowedValue

from transforms import __version__
from transforms.article import Article, identity_keys
from transforms.charsets import BOMS, codec_name
from transforms.clock import utcnow
from transforms.dates import parse_date
from transforms.dead_letter import DEAD_LETTER_TAG, PAGE_STAGE, DeadLetter, Routed, reject
from transforms.fetching import FetchError, read_capped, retry_after_seconds
from transforms.netguard import (
    AllowList,
    BlockedAddress,
    Deadline,
    DeadlineExceeded,
    check_url,
    guarded_session,
)
from transforms.page_text import extract_body, prune

# ---------------------------------------------------------------------------------------------------------------
# Decoding

_META_CHARSET = re.compile(rb"""<meta[^>]+?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)
_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)
# The meta tag must come early (HTML5 says within the first 1024 bytes; pages with long heads put it later).
_META_SCAN_BYTES = 4096


def decode_html(body: bytes, content_type: str = "") -> tuple[str, str]:
    """The page as text and the charset used (see the module docstring for the order of the sources)."""
    for bom, name in BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(name, "replace"), name
    header = _HEADER_CHARSET.search(content_type or "")
    name = codec_name(header.group(1)) if header else ""
    if not name:
        meta = _META_CHARSET.search(body, 0, _META_SCAN_BYTES)
        name = codec_name(meta.group(1).decode("ascii")) if meta else ""
        if name.startswith("utf-16"):  # a meta tag readable as ASCII cannot be in UTF-16: the tag is wrong
            name = ""
    if name:
        return body.decode(name, "replace"), name
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes  # only pages that are neither declared nor UTF-8 pay for it

    best = from_bytes(body[:65536]).best()
    name = codec_name(best.encoding) if best is not None else ""
    name = name or "cp1252"
    return body.decode(name, "replace"), name


# ---------------------------------------------------------------------------------------------------------------
# Extraction


@dataclasses.dataclass(frozen=True)
class ExtractedPage:
    """What a page gave: the body text ('' when none was found) and the metadata it declared."""

    text: str
    canonical_url: str = ""
    published_at: dt.datetime | None = None
    authors: tuple[str, ...] = ()
    language: str = ""
    charset: str = ""


# trafilatura's own parser settings (comments and processing instructions dropped while parsing).
_PARSER = lxml.html.HTMLParser(
    collect_ids=False, default_doctype=False, encoding="utf-8", remove_comments=True, remove_pis=True
)
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)

_DATE_META = (
    "article:published_time",
    "og:article:published_time",
    "datepublished",
    "pubdate",
    "publishdate",
    "publish-date",
    "publish_date",
    "date",
    "dc.date.issued",
    "dc.date",
    "dcterms.created",
    "sailthru.date",
    "parsely-pub-date",
    "article.published",
    "published_time",
)
_AUTHOR_META = ("author", "article:author", "dc.creator", "byl", "parsely-author", "sailthru.author")
_LANG = re.compile(r"^([A-Za-z]{2,3})(?:[-_][A-Za-z0-9]+)*$")


def parse_html(text: str) -> lxml.html.HtmlElement | None:
    """The document tree of a page's text, None when there is no document in it."""
    text = _XML_DECLARATION.sub("", text, count=1)
    if not text.strip():
        return None
    try:
        root = lxml.html.fromstring(text.encode("utf-8", "surrogatepass"), parser=_PARSER)
    except (lxml.etree.ParserError, ValueError):
        return None
    return root if root is not None and isinstance(root, lxml.html.HtmlElement) else None


def _meta(tree: lxml.html.HtmlElement) -> dict[str, str]:
    """First content of each <meta name|property|itemprop>, keys lower-cased."""
    found: dict[str, str] = {}
    for meta in tree.iter("meta"):
        key = meta.get("property") or meta.get("name") or meta.get("itemprop") or ""
        content = meta.get("content")
        if key and content:
            found.setdefault(key.strip().lower(), content.strip())
    return found


def _json_ld(tree: lxml.html.HtmlElement) -> list[dict]:
    """The JSON-LD objects of the page (graphs flattened), those that parse."""
    objects: list[dict] = []
    for script in tree.iter("script"):
        if (script.get("type") or "").strip().lower() != "application/ld+json" or not script.text:
            continue
        try:
            data = json.loads(script.text)
        except ValueError:
            continue
        stack = data if isinstance(data, list) else [data]
        while stack:
            item = stack.pop(0)
            if isinstance(item, dict):
                objects.append(item)
                graph = item.get("@graph")
                if isinstance(graph, list):
                    stack.extend(graph)
    return objects


def _names(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return _names(value.get("name"))
    if isinstance(value, list):
        return [name for item in value for name in _names(item)]
    return []


def _metadata(tree: lxml.html.HtmlElement, url: str) -> dict:
    meta = _meta(tree)
    ld = [o for o in _json_ld(tree) if "datePublished" in o or "author" in o]

    canonical = ""
    for link in tree.iter("link"):
        if "canonical" in (link.get("rel") or "").lower().split() and (link.get("href") or "").strip():
            canonical = link.get("href").strip()
            break
    canonical = canonical or meta.get("og:url", "")
    if canonical:
        canonical = urljoin(url, canonical) if url else canonical
        if not canonical.startswith(("http://", "https://")):
            canonical = ""

    published = None
    for obj in ld:
        published = parse_date(str(obj.get("datePublished", "")))
        if published:
            break
    for key in _DATE_META:
        if published:
            break
        published = parse_date(meta.get(key, ""))
    if published is None:
        for element in tree.iter("time"):
            published = parse_date(element.get("datetime", ""))
            if published:
                break

    authors: list[str] = []
    for obj in ld:
        authors = _names(obj.get("author"))
        if authors:
            break
    if not authors:
        for key in _AUTHOR_META:
            value = meta.get(key, "")
            if value and not value.startswith(("http://", "https://")):
                authors = [value]
                break
    authors = list(dict.fromkeys(" ".join(a.split()) for a in authors if a and a.strip()))

    language = ""
    for candidate in (
        tree.get("lang"),
        tree.get("{http://www.w3.org/XML/1998/namespace}lang"),
        meta.get("og:locale"),
        meta.get("content-language"),
        meta.get("language"),
    ):
        match = _LANG.match((candidate or "").strip())
        if match:
            language = match.group(1).lower()
            break
    return {"canonical_url": canonical, "published_at": published, "authors": tuple(authors[:20]), "language": language}


def extract_page(html: bytes, url: str = "", content_type: str = "") -> ExtractedPage:
    """The body and metadata of one HTML page (bytes as received; `content_type` as sent, for its charset)."""
    text, charset = decode_html(html, content_type)
    tree = parse_html(text)
    if tree is None:
        return ExtractedPage(text="", charset=charset)
    metadata = _metadata(tree, url)
    prune(tree)
    return ExtractedPage(text=extract_body(tree, url), charset=charset, **metadata)


# ---------------------------------------------------------------------------------------------------------------
# The stage
#
# What holds where: the per-host limits (connections and delay) and the robots.txt cache live in one PageFetcher per
# worker process and run (`shared_fetcher`), which every DoFn instance (one per SDK worker thread) of that process
# uses. With several worker processes (Dataflow workers, DirectRunner multi_processing) each keeps its own: two
# workers may each open `per_host_connections` to a host. In batch runs pages are grouped by URL before fetching, so
# a URL is fetched once per run whatever the worker count; in streaming a page is remembered by the DoFn instance
# that fetched it.

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


class _SetOnce:
    """A side input converted to a set once per DoFn instance, not once per element."""

    def __init__(self):
        self._source_id: int | None = None
        self._value: set = set()

    def get(self, side_input) -> set:
        if self._source_id != id(side_input):
            self._source_id, self._value = id(side_input), set(side_input)
        return self._value


class _SelectFn(beam.DoFn):
    """Routes the articles whose page is wanted (and not written by an earlier run) to FETCH_TAG."""

    FETCH_TAG = "fetch"

    def __init__(self, settings: ExtractSettings, modes: dict[str, str]):
        self._settings, self._modes = settings, modes
        self._written = _SetOnce()
        self._skipped_written = Metrics.counter(PAGE_STAGE, "pages_skipped_already_written")

    def process(self, article: Article, written_keys=()) -> Iterator[Article | TaggedOutput[Literal["fetch"], Article]]:
        mode = self._modes.get(article.feed_url) or self._settings.mode
        if not wants_page(article, mode, self._settings.min_chars):
            yield article
        elif any(key in self._written.get(written_keys) for key in identity_keys(article)):
            self._skipped_written.inc()  # dropped later as already written: its page is not fetched again
            yield article
        else:
            yield beam.pvalue.TaggedOutput(self.FETCH_TAG, article)


class _FetchPagesFn(beam.DoFn):
    """Fetches the pages of (url, articles) groups in batches over a thread pool; one fetch per URL.

    Outputs are emitted as WindowedValues carrying each input's own timestamp and window, since a batch is
    flushed while processing a later element or at the end of the bundle.
    """

    def __init__(self, settings: ExtractSettings, run_id: str):
        self._settings, self._run_id = settings, run_id
        self._counters = {
            name: Metrics.counter(PAGE_STAGE, name)
            for name in ("pages_fetched", "pages_extracted", "pages_truncated", "pages_cached")
        }

    def setup(self):
        self._fetcher = shared_fetcher(self._settings, self._run_id)
        self._pool = concurrent.futures.ThreadPoolExecutor(self._settings.threads, thread_name_prefix="page")
        self._cache: dict[str, PageResult] = {}  # streaming: a URL seen again by this instance is not refetched

    def teardown(self):
        self._pool.shutdown(wait=False, cancel_futures=True)

    def start_bundle(self):
        self._batch: list[tuple[str, list[Article], WindowedValue]] = []

    def process(self, element, timestamp=beam.DoFn.TimestampParam, window=beam.DoFn.WindowParam):
        url, articles = element
        self._batch.append((url, list(articles), WindowedValue(None, timestamp, (window,))))
        if len(self._batch) >= self._settings.batch_size:
            yield from self._flush()

    def finish_bundle(self):
        yield from self._flush()

    def _flush(self):
        batch, self._batch = self._batch, []
        todo = {url for url, _, _ in batch if url not in self._cache}
        futures = {url: self._pool.submit(self._fetcher.fetch, url) for url in todo}
        for url, articles, where in batch:
            if url in futures:
                result = self._cache[url] = futures[url].result()
                self._counters["pages_fetched"].inc()
                self._counters["pages_extracted"].inc(result.page is not None)
                self._counters["pages_truncated"].inc(result.truncated)
                Metrics.counter(PAGE_STAGE, result.reason or "ok").inc()
                del futures[url]
            else:
                result = self._cache[url]
                self._counters["pages_cached"].inc()
            for article in articles:
                updated, letter = apply_page(article, result)
                yield where.with_value(updated)
                if letter is not None:
                    yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, where.with_value(letter))
        if len(self._cache) > 10000:
            self._cache.clear()


class FetchArticlePages(beam.PTransform):
    """Articles in (raw, as parsed); the same articles out, with their page's text where it was fetched.

    `feeds` gives each feed's own `extract` mode (a FeedSource's `extract`, empty for the config's). `written_keys`
    is a PCollection of identity keys (article.identity_keys: (index column, key hash)) already in the output: those are never
    fetched again (DeduplicateArticles drops them later). `group_by_url` (batch) fetches a URL once per run even
    across workers; streaming leaves it off (there is no end to group by) and relies on each instance's cache.
    """

    def __init__(
        self,
        settings: ExtractSettings = ExtractSettings(),
        feeds: Iterable = (),
        run_id: str = "",
        written_keys: beam.PCollection | None = None,
        group_by_url: bool = True,
    ):
        super().__init__()
        self._settings, self._run_id = settings, run_id
        self._modes = {feed.url: getattr(feed, "extract", "") for feed in feeds if getattr(feed, "extract", "")}
        self._written_keys = written_keys
        self._group = group_by_url

    def expand(self, articles: beam.PCollection):
        side = () if self._written_keys is None else (beam.pvalue.AsList(self._written_keys),)
        selected = articles | "Select" >> beam.ParDo(_SelectFn(self._settings, self._modes), *side).with_outputs(
            _SelectFn.FETCH_TAG, main="kept"
        )
        wanted = selected[_SelectFn.FETCH_TAG]
        if self._group:
            groups = wanted | "ByUrl" >> beam.Map(lambda a: (a.url, a)) | "GroupByUrl" >> beam.GroupByKey()
        else:
            groups = wanted | "OneEach" >> beam.Map(lambda a: (a.url, [a]))
        fetched = groups | "FetchPages" >> beam.ParDo(_FetchPagesFn(self._settings, self._run_id)).with_outputs(
            DEAD_LETTER_TAG, main="articles"
        )
        merged = (selected.kept, fetched.articles) | "Rejoin" >> beam.Flatten()
        return Routed(merged, fetched[DEAD_LETTER_TAG])

"""Links: an entry's link as an absolute http(s) URL, and its canonical form.

`article_link` is how the feed readers (transforms/readers/) take an entry's link; `canonical_url` is the form
ParseEntries keys articles by and DeduplicateArticles compares (its tracking parameters are the dedup settings').
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

DEFAULT_TRACKING_PARAMETERS = (
    "utm_*",
    "fbclid",
    "gclid",
    "dclid",
    "msclkid",
    "mc_cid",
    "mc_eid",
    "igshid",
    "_ga",
    "yclid",
    "ref_src",
    "cmpid",
    "ito",
    "at_medium",
    "at_campaign",
    "ns_mchannel",
    "ns_source",
    "ns_campaign",
    "ns_linkname",
    "ns_fee",
    "xtor",
)

_DEFAULT_PORTS = {"http": "80", "https": "443"}


@functools.lru_cache(maxsize=16)
def _tracking_rules(tracking_parameters: tuple[str, ...]) -> tuple[frozenset[str], tuple[str, ...]]:
    """(exact names, name prefixes) of tracking parameters, lower-cased: built once per list, not once per URL
    (ParseEntries canonicalises every entry's link)."""
    exact = frozenset(p.lower() for p in tracking_parameters if not p.endswith("*"))
    prefixes = tuple(p[:-1].lower() for p in tracking_parameters if p.endswith("*"))
    return exact, prefixes


def canonical_url(url: str, tracking_parameters: Iterable[str] = DEFAULT_TRACKING_PARAMETERS) -> str:
    """The URL with scheme and host lower-cased, default port, fragment and tracking parameters removed,
    and the remaining query sorted. A string that is not an absolute URL is returned stripped, unchanged."""
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.scheme or not parts.netloc:
        return url
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    netloc = host if ":" not in host else f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None and str(port) != _DEFAULT_PORTS.get(scheme):
        netloc = f"{netloc}:{port}"
    if parts.username:
        netloc = f"{parts.username}{':' + parts.password if parts.password else ''}@{netloc}"
    exact, prefixes = _tracking_rules(tuple(tracking_parameters))
    query = sorted(
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k.lower() not in exact and not (prefixes and k.lower().startswith(prefixes))
    )
    return urlunsplit((scheme, netloc, parts.path or "/", urlencode(query), ""))


def article_link(link: str, base: str = "") -> str:
    """The entry's link as an absolute http(s) URL, or '' when it is none (other scheme, invalid port or host)."""
    link = (link or "").strip()
    if not link:
        return ""
    try:
        # Most links are absolute already: urljoin is the dearest step of reading an entry.
        absolute = link if link[:8].lower().startswith(("http://", "https://")) or not base else urljoin(base, link)
        parts = urlsplit(absolute)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return ""
    return absolute

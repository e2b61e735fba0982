"""What the feed fetcher (fetch.py) and the page fetcher (extract.py) share about the outcome of one exchange.

- `FetchError`: a feed or page that could not be had, with a short snake_case `reason` (dead letters and counters
  use it), the HTTP status when there was one, and the server's requested wait; `TransientFetchError` is one
  worth another attempt.
- `read_capped`: the decoded body, read under a size cap that counts decoded bytes (a gzip bomb stops early),
  into memory or, past a threshold, into a temporary file (transforms/spool.py).
- `retry_after_seconds`: a Retry-After header in seconds.

Not a stage: a helper module both fetchers import, beside transforms/netguard/ (where a request may go and how long
it may take).
"""

from __future__ import annotations

import datetime as dt
import email.utils

import requests
import urllib3

from transforms.spool import Body, BodySink

_CHUNK_BYTES = 64 * 1024


class FetchError(Exception):
    """A feed or page that could not be fetched. `reason` is a short snake_case code used in dead letters and
    counters; `retry_after` is the server's requested wait, kept so the feed's schedule can honour it."""

    def __init__(self, reason: str, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.status = status
        self.retry_after = retry_after


class TransientFetchError(FetchError):
    """A failure worth another attempt (a timeout, a lost connection, a 5xx); `retry_after` is the server's
    requested wait, if it gave one."""


def read_capped(
    response: requests.Response, max_bytes: int, *, keep_start: bool = False, spool_over: int | None = None
) -> tuple[Body, bool]:
    """The decoded body of a streamed response, and whether it was cut at `max_bytes`.

    Past `max_bytes` a feed and a page want different things, so the caller says which: by default the body is
    refused (FetchError `too_large`, as soon as a Content-Length or the bytes read show it: a feed cut short is no
    longer a document); with `keep_start` the first `max_bytes` are kept and the rest is never downloaded (a page's
    article comes before its comments and footers, and the part read is still extracted). A body longer than
    `spool_over` bytes goes to a temporary file as it arrives and comes back as a SpooledBody (transforms/spool.py),
    which the caller closes; a body that fails or is refused leaves no file. A read that fails is a
    TransientFetchError (`timeout`, `connection_error`) or a FetchError (`decode_error`, `ssl_error`). The time is
    bounded by the exchange's netguard.Deadline, not here.
    """
    status = response.status_code
    declared = response.headers.get("Content-Length", "")
    if not keep_start and declared.isdigit() and not response.headers.get("Content-Encoding"):
        if int(declared) > max_bytes:
            raise FetchError("too_large", f"Content-Length {declared} exceeds {max_bytes} bytes", status)
    with BodySink(spool_over) as sink:
        try:
            # urllib3's read1 decodes gzip/deflate as it goes and bounds how much one compressed read may inflate
            # to, so the cap counts decoded bytes and a gzip bomb stops early.
            while chunk := response.raw.read1(_CHUNK_BYTES, decode_content=True):
                if sink.size + len(chunk) > max_bytes:
                    if not keep_start:
                        raise FetchError("too_large", f"body exceeds {max_bytes} bytes (decoded)", status)
                    sink.write(chunk[: max_bytes - sink.size])
                    return sink.result(), True
                sink.write(chunk)
        except urllib3.exceptions.ReadTimeoutError as err:
            raise TransientFetchError("timeout", f"body read timed out: {err}", status) from err
        except urllib3.exceptions.DecodeError as err:
            raise FetchError("decode_error", f"cannot decode body: {err}", status) from err
        except urllib3.exceptions.SSLError as err:
            raise FetchError("ssl_error", str(err), status) from err
        except urllib3.exceptions.ProtocolError as err:  # connection reset, body shorter than Content-Length, ...
            raise TransientFetchError("connection_error", f"connection lost in body: {err}", status) from err
        return sink.result(), False


def retry_after_seconds(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP-date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - (now or dt.datetime.now(dt.timezone.utc))).total_seconds())

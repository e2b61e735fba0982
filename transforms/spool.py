"""A fetched document's bytes: held in memory when small, spooled to a temporary file when big.

    with BodySink(spool_over=8 << 20) as sink:      # the fetcher, as the body arrives
        for chunk in response: sink.write(chunk)
        body = sink.result()                       # bytes up to 8 MiB, else a SpooledBody
    head(body, 512); for part in chunks(body): ...; reader(body).read(65536); len(body)
    body.close()                                    # a SpooledBody's file goes with it

A feed of 100,000 entries is 600 MB: held whole while its entries were read, it was most of a run's peak memory.
Spooled, the readers (transforms/readers/) take it a chunk at a time, and the functions here let them treat both
kinds alike. The file is a `tempfile.TemporaryFile` in the system's temporary directory (`TMPDIR`): on POSIX systems
it has no name in the directory (Linux's O_TMPFILE, else unlinked at once), so the system frees it when it is
closed, or when the process ends however it ends (SIGKILL too).
A SpooledBody belongs to the process that made it; it cannot be pickled, so it never crosses a Beam boundary.

Not a stage: a helper of the feed fetcher (transforms/fetch.py) and the feed readers, as transforms/fetching.py.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from typing import BinaryIO

# How much a pass over a spooled body reads at a time: big enough that Python's per-call costs vanish, small
# enough that a pass holds nothing worth measuring.
CHUNK_BYTES = 1 << 20


class SpooledBody:
    """A document's bytes in a temporary file: `len()`, `head()`, `chunks()`, `reader()`; `close()` frees it.

    `after(n)` is a view of the same file from byte n on (a BOM skipped); closing the original closes its views.
    """

    def __init__(self, file: BinaryIO, start: int, size: int):
        self._file = file
        self._start = start
        self._size = size

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return f"SpooledBody({self._size} bytes{', closed' if self.closed else ''})"

    def __reduce__(self):
        raise TypeError("a SpooledBody is a temporary file of one process: read it where it was fetched")

    @property
    def closed(self) -> bool:
        return self._file.closed

    def close(self) -> None:
        """Delete the file (it has no name: closing it is what frees it)."""
        self._file.close()

    def after(self, skip: int) -> SpooledBody:
        """The bytes from `skip` on, without copying them."""
        skip = min(skip, self._size)
        return SpooledBody(self._file, self._start + skip, self._size - skip)

    def read_at(self, offset: int, size: int) -> bytes:
        """At most `size` bytes from `offset` (relative to this body's start)."""
        size = max(0, min(size, self._size - offset))
        if size == 0:
            return b""
        # Several readers may be open on one file (the root sniff, then the entries): each seeks for itself.
        self._file.seek(self._start + offset)
        return self._file.read(size)

    def head(self, size: int) -> bytes:
        return self.read_at(0, size)

    def chunks(self, size: int = 0) -> Iterator[bytes]:
        size = size or CHUNK_BYTES  # looked up now, so a test can make chunks small enough to cut characters
        offset = 0
        while part := self.read_at(offset, size):
            offset += len(part)
            yield part

    def reader(self) -> _Reader:
        return _Reader(self)

    def read_all(self) -> bytes:
        """The whole body in memory: for the readers that cannot read a document a piece at a time."""
        return self.read_at(0, self._size)


class _Reader(io.RawIOBase):
    """A file-like view of a SpooledBody with its own position (lxml's iterparse reads from it)."""

    def __init__(self, body: SpooledBody):
        self._body = body
        self._position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._body.read_at(self._position, len(buffer))
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def read(self, size: int = -1) -> bytes:
        data = self._body.read_at(self._position, len(self._body) if size is None or size < 0 else size)
        self._position += len(data)
        return data


Body = bytes | SpooledBody


def head(body: Body, size: int) -> bytes:
    """The first `size` bytes."""
    return body[:size] if isinstance(body, bytes) else body.head(size)


def chunks(body: Body) -> Iterator[bytes]:
    """The bytes in order: an in-memory body in one piece (as it always was read), a spooled one in chunks."""
    if isinstance(body, bytes):
        if body:
            yield body
        return
    yield from body.chunks()


def after(body: Body, skip: int) -> Body:
    """The bytes from `skip` on (a BOM skipped)."""
    if isinstance(body, bytes):
        return body[skip:]
    return body.after(skip)


def reader(body: Body) -> BinaryIO:
    """A file-like object reading the body from its start."""
    return io.BytesIO(body) if isinstance(body, bytes) else body.reader()


def close(body: Body) -> None:
    """Free a spooled body's file; nothing to do for bytes."""
    if isinstance(body, SpooledBody):
        body.close()


def whole(body: Body) -> bytes:
    """The body in memory (a spooled one read back whole)."""
    return body if isinstance(body, bytes) else body.read_all()


class BodySink:
    """Collects a body as it arrives: in memory until it passes `spool_over` bytes, then in a temporary file
    (`spool_over` None: always in memory; 0: always in a file). Leaving the `with` block by an exception, or
    without taking `result()`, deletes the file."""

    def __init__(self, spool_over: int | None = None):
        self._spool_over = spool_over
        self._parts: list[bytes] = []
        self._file: BinaryIO | None = None
        self.size = 0

    def __enter__(self) -> BodySink:
        return self

    def __exit__(self, *exc_info) -> None:
        self.discard()

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self._file is None:
            self._parts.append(data)
            if self._spool_over is not None and self.size > self._spool_over:
                self._file = tempfile.TemporaryFile(prefix="newsbeam-body-")
                for part in self._parts:
                    self._file.write(part)
                self._parts = []
        else:
            self._file.write(data)

    def result(self) -> Body:
        """The body: bytes, or a SpooledBody the caller must close."""
        if self._file is None:
            body, self._parts = b"".join(self._parts), []
            return body
        file, self._file = self._file, None
        file.flush()
        return SpooledBody(file, 0, self.size)

    def discard(self) -> None:
        """Drop what was collected (the file deleted), unless `result()` took it."""
        self._parts = []
        if self._file is not None:
            self._file.close()
            self._file = None

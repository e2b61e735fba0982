"""Deadline: a hard wall-clock budget for a whole exchange (DNS, connect, TLS, headers, body)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

from transforms.netguard.errors import BlockedAddress, DeadlineExceeded

_local = threading.local()


def current_deadline() -> Deadline | None:
    """The innermost Deadline entered in this thread, if any."""
    stack = getattr(_local, "deadlines", None)
    return stack[-1] if stack else None


class Deadline:
    """A hard wall-clock budget for everything done inside `with Deadline(seconds):` in this thread.

    Guarded connections made or reused inside the block register their sockets; when the budget runs out a
    watchdog shuts them down, which ends any blocked read or write at once, and leaving the block raises
    DeadlineExceeded (even when the block itself ended quietly: a body cut short can look complete).
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.seconds = max(0.0, float(seconds))
        self._clock = clock
        self._end = clock() + self.seconds
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._fired = False
        self._timer: threading.Timer | None = None

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self._end - self._clock())

    @property
    def expired(self) -> bool:
        """True once the budget is spent."""
        return self._fired or self._clock() >= self._end

    def check(self) -> None:
        """Raise DeadlineExceeded if the budget is spent."""
        if self.expired:
            raise DeadlineExceeded(f"exchange took longer than {self.seconds:g}s")

    def watch(self, sock: socket.socket) -> None:
        """Shut `sock` down when the budget runs out (a duplicate descriptor, so TLS wrapping does not matter)."""
        try:
            watched = socket.fromfd(sock.fileno(), sock.family, sock.type)
        except OSError:
            return
        with self._lock:
            self._sockets.append(watched)
            fired = self._fired
        if fired:
            _shutdown(watched)

    def __enter__(self) -> Deadline:
        if not hasattr(_local, "deadlines"):
            _local.deadlines = []
        _local.deadlines.append(self)
        self._timer = threading.Timer(self.remaining(), self._fire)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._timer is not None:
            self._timer.cancel()
        _local.deadlines.remove(self)
        with self._lock:
            fired, sockets, self._sockets = self._fired, self._sockets, []
        for watched in sockets:
            watched.close()
        if isinstance(exc, BlockedAddress):
            return
        if fired or (exc is not None and self.expired):
            raise DeadlineExceeded(f"exchange took longer than {self.seconds:g}s") from exc

    def _fire(self) -> None:
        with self._lock:
            self._fired = True
            sockets = list(self._sockets)
        for watched in sockets:
            _shutdown(watched)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass

"""The two ways the guard refuses an exchange: a peer it may not reach, and a budget run out."""

from __future__ import annotations

REASON = "blocked_address"


class BlockedAddress(Exception):
    """A request refused because its target is not a public address (nor allowed by config), or not http(s)."""

    reason = REASON

    def __init__(self, message: str, host: str = "", address: str = ""):
        super().__init__(message)
        self.host = host
        self.address = address


class DeadlineExceeded(TimeoutError):
    """The wall-clock budget of an exchange ran out (whatever the server was doing at the time)."""

    reason = "timeout"

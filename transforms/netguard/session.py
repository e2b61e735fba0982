"""guarded_session: a requests.Session whose every connection checks its peer and answers to the Deadline."""

from __future__ import annotations

import socket
import threading

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

from transforms.netguard.addresses import AllowList, _sockaddr_ip, check_address, resolve
from transforms.netguard.deadline import current_deadline
from transforms.netguard.errors import BlockedAddress

_local = threading.local()


class allowing:
    """`with allowing(extra):` lets guarded sessions in this thread also reach what `extra` allows.

    For what one request may reach and the next may not (an intranet feed and its own redirects) without a
    session per feed. Pooled connections are re-checked against the allow list of each new exchange.
    """

    def __init__(self, extra: AllowList):
        self.extra = extra

    def __enter__(self) -> AllowList:
        if not hasattr(_local, "allowed"):
            _local.allowed = []
        _local.allowed.append(self.extra)
        return self.extra

    def __exit__(self, *exc_info) -> None:
        _local.allowed.remove(self.extra)


def _effective(allow: AllowList) -> AllowList:
    for extra in getattr(_local, "allowed", ()):
        allow = allow.union(extra)
    return allow


# Guarded connections


def _guarded_new_conn(conn: HTTPConnection, allow: AllowList) -> socket.socket:
    """Resolve, check every address, then connect to a checked one: what urllib3's _new_conn does, guarded."""
    allow = _effective(allow)
    deadline = current_deadline()
    timeout = conn.timeout if isinstance(conn.timeout, (int, float)) else socket.getdefaulttimeout()
    if deadline is not None:
        deadline.check()
        timeout = deadline.remaining() if timeout is None else min(timeout, deadline.remaining())
    host = conn._dns_host
    try:
        infos = resolve(host, conn.port, timeout)
    except socket.gaierror as err:
        raise NameResolutionError(conn.host, conn, err) from err
    if not infos:
        raise NameResolutionError(conn.host, conn, socket.gaierror(f"no address for {host}"))
    for *_, sockaddr in infos:  # every address first: one bad answer refuses the host
        check_address(conn.host, _sockaddr_ip(sockaddr), allow)
    error: OSError | None = None
    for family, socktype, proto, _, sockaddr in infos:
        sock = socket.socket(family, socktype, proto)
        try:
            for option in conn.socket_options or ():
                sock.setsockopt(*option)
            if deadline is not None:
                timeout = deadline.remaining() if timeout is None else min(timeout, deadline.remaining())
            sock.settimeout(timeout)
            if conn.source_address:
                sock.bind(conn.source_address)
            if deadline is not None:
                deadline.watch(sock)
            sock.connect(sockaddr)
            return sock
        except OSError as err:
            sock.close()
            error = err
    if isinstance(error, TimeoutError):
        raise ConnectTimeoutError(conn, f"Connection to {conn.host} timed out. (connect timeout={timeout})")
    raise NewConnectionError(conn, f"Failed to establish a new connection: {error}")


class _GuardedConnectionMixin:
    _allow: AllowList = AllowList()

    def _new_conn(self) -> socket.socket:
        return _guarded_new_conn(self, self._allow)

    def request(self, *args, **kwargs):
        if self.sock is not None:
            # A pooled connection was checked for the exchange that made it, maybe under a wider allow list.
            try:
                peer = self.sock.getpeername()[0]
            except OSError:
                peer = None
            if peer is not None:
                check_address(self.host, peer.split("%", 1)[0], _effective(self._allow))
            deadline = current_deadline()
            if deadline is not None:
                deadline.watch(self.sock)
        return super().request(*args, **kwargs)


class _GuardedAdapter(HTTPAdapter):
    def __init__(self, allow: AllowList, **kwargs):
        self._allow = allow
        super().__init__(**kwargs)

    def __getstate__(self):
        state = super().__getstate__()
        state["_allow"] = self._allow
        return state

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        allow = self._allow

        class Connection(_GuardedConnectionMixin, HTTPConnection):
            _allow = allow

        class TLSConnection(_GuardedConnectionMixin, HTTPSConnection):
            _allow = allow

        class Pool(HTTPConnectionPool):
            ConnectionCls = Connection

        class TLSPool(HTTPSConnectionPool):
            ConnectionCls = TLSConnection

        self.poolmanager.pool_classes_by_scheme = {"http": Pool, "https": TLSPool}

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        # Through a proxy the guard would check the proxy, not the target.
        raise BlockedAddress(f"proxies are not allowed with a guarded session ({proxy})")


def guarded_session(user_agent: str, allow: AllowList = AllowList(), *, pool_maxsize: int = 10) -> requests.Session:
    """A `requests.Session` that refuses non-public peers (unless `allow` lists them) at connect time, every hop.

    Proxy settings from the environment are ignored (`trust_env` off): a proxy would hide the real peer.
    Use it inside `with Deadline(seconds):` to bound an exchange in wall-clock time.
    """
    session = requests.Session()
    session.trust_env = False
    adapter = _GuardedAdapter(allow, pool_maxsize=pool_maxsize)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = user_agent
    return session

"""Network guard shared by every fetcher (feeds, pages): where a request may go, and how long it may take.

Not a stage: a helper module that fetch.py and the page fetcher both import.

- `is_public_address` says whether an IP is on the public internet (loopback, private, link-local, multicast,
  reserved, unspecified, shared/CGNAT and the IPv6 forms that embed such an IPv4 address are not).
- `AllowList` holds the non-public hosts and networks the config lets us reach (intranet feeds).
- `guarded_session` is a `requests.Session` whose connections resolve the host, check every address it resolves
  to, and connect to the checked address itself, for every hop of a redirect chain: a DNS answer cannot change
  between the check and the connect. TLS SNI and the Host header keep the name.
- `Deadline` is a hard wall-clock budget for a whole exchange (DNS, connect, TLS, headers, body): a watchdog
  shuts the sockets of the exchange down when it runs out, so a server dripping one byte a second cannot hold
  a worker past it.

    allow = AllowList.parse(["intranet.example", "10.1.2.3", "192.168.0.0/16"])
    with guarded_session("newsbeam/0.1", allow) as session, Deadline(20):
        response = session.get(url, timeout=(5, 10))
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import email.utils
import ipaddress
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

REASON = "blocked_address"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Not public, yet not all flagged by the ipaddress properties in every Python version.
_NON_PUBLIC_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",
        "100.64.0.0/10",  # shared address space (carrier-grade NAT)
        "192.0.0.0/24",
        "198.18.0.0/15",
        "240.0.0.0/4",
        "::/96",  # IPv4-compatible IPv6 (deprecated) and the unspecified address
        "100::/64",  # discard-only
        "2001:db8::/32",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

_HOST_PATTERN = re.compile(r"^(\*\.|\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")


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


def is_public_address(ip: str | IPAddress) -> bool:
    """True only for an address on the public internet; False for anything unparsable."""
    try:
        address = ip if isinstance(ip, (ipaddress.IPv4Address, ipaddress.IPv6Address)) else ipaddress.ip_address(ip)
    except ValueError:
        return False
    if address.version == 6:
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public_address(embedded)
        if address.teredo:  # a tunnel to an address we cannot judge
            return False
    if (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or any(address in net for net in _NON_PUBLIC_NETWORKS if net.version == address.version)
    ):
        return False
    return address.is_global


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for: mapped (::ffff:a.b.c.d), 6to4 or NAT64; None otherwise."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _ipv4_number(part: str) -> int | None:
    if re.fullmatch(r"0[xX][0-9a-fA-F]*", part):
        return int(part[2:] or "0", 16)
    if re.fullmatch(r"0[0-7]+", part):
        return int(part, 8)
    if re.fullmatch(r"0|[1-9][0-9]*", part):
        return int(part)
    return None


def numeric_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address of a numeric host in any inet_aton form (`2130706433`, `0x7f.1`, `017700000001`, `127.1`).

    Resolvers accept these forms, so a check that only knows dotted quads would let them through.
    Raises ValueError for a numeric host out of range; None for a host that is not numeric at all.
    """
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if not 1 <= len(parts) <= 4:
        return None
    numbers = [_ipv4_number(part) for part in parts]
    if any(number is None for number in numbers):
        return None
    *leading, last = numbers
    if any(number > 255 for number in leading) or last >= 256 ** (5 - len(parts)):
        raise ValueError(f"numeric host out of range: {host}")
    value = last
    for index, number in enumerate(leading):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def host_address(host: str) -> IPAddress | None:
    """The IP a URL host names literally (brackets, IPv6 zone and numeric IPv4 forms understood); None for a name."""
    host = host.strip().strip("[]").rstrip(".").lower()
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return numeric_ipv4(host)


def _normal_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


@dataclasses.dataclass(frozen=True)
class AllowList:
    """Non-public hosts and networks a request may reach anyway (intranet feeds), from config strings.

    `hosts` are exact names, or `*.example.org` / `.example.org` for every subdomain; `networks` are IPs or CIDRs.
    """

    hosts: frozenset[str] = frozenset()
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def parse(cls, items: Iterable[str]) -> AllowList:
        """Build from config strings; ValueError naming the first item that is neither a host, an IP nor a CIDR."""
        hosts: set[str] = set()
        networks = []
        for item in items:
            text = _normal_host(str(item))
            if not text:
                continue
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
                continue
            except ValueError:
                pass
            try:
                numeric = numeric_ipv4(text)
            except ValueError:
                numeric = None
                text = ""  # numeric-looking but out of range: not a name either
            if numeric is not None:
                networks.append(ipaddress.ip_network(numeric))
                continue
            if not text or not _HOST_PATTERN.match(text):
                raise ValueError(f"not a host name, IP address or CIDR network: {item!r}")
            hosts.add("." + text[2:] if text.startswith("*.") else text)
        return cls(frozenset(hosts), tuple(networks))

    def union(self, other: AllowList) -> AllowList:
        """Both lists together."""
        return AllowList(self.hosts | other.hosts, self.networks + other.networks)

    def allows(self, host: str, ip: str | IPAddress | None = None) -> bool:
        """True when `host` is listed (exactly, or under a listed `.domain`) or `ip` is in a listed network."""
        name = _normal_host(host or "")
        if name and (name in self.hosts or any(h.startswith(".") and name.endswith(h) for h in self.hosts)):
            return True
        if ip is None:
            return False
        try:
            address = ip if not isinstance(ip, str) else ipaddress.ip_address(_normal_host(ip).split("%", 1)[0])
        except ValueError:
            return False
        candidates = [address]
        if address.version == 6 and (embedded := _embedded_ipv4(address)) is not None:
            candidates.append(embedded)
        return any(a in net for a in candidates for net in self.networks if net.version == a.version)

    def __bool__(self) -> bool:
        return bool(self.hosts or self.networks)


def check_address(host: str, ip: str | IPAddress, allow: AllowList) -> None:
    """Raise BlockedAddress unless `ip` is public or `allow` lets `host`/`ip` through."""
    if is_public_address(ip) or allow.allows(host, ip):
        return
    raise BlockedAddress(f"{host} resolves to non-public address {ip}", host=host, address=str(ip))


# getaddrinfo has no timeout of its own: it runs here so a hung resolver costs a thread, not the exchange.
_resolver = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="netguard-dns")


def resolve(host: str, port: int, timeout: float | None = None) -> list[tuple]:
    """`getaddrinfo` results (family, type, proto, canonname, sockaddr) for a TCP connection to host:port.

    Numeric hosts in any form are answered without a resolver. Raises socket.gaierror, or DeadlineExceeded
    when the resolver does not answer within `timeout` seconds.
    """
    literal = host_address(host)
    if literal is not None:
        if literal.version == 4:
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (str(literal), port))]
        return [(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (str(literal), port, 0, 0))]
    future = _resolver.submit(socket.getaddrinfo, _normal_host(host), port, 0, socket.SOCK_STREAM)
    try:
        return future.result(timeout=timeout)
    except concurrent.futures.TimeoutError as err:
        raise DeadlineExceeded(f"no DNS answer for {host} within {timeout:.1f}s") from err


def _sockaddr_ip(sockaddr: tuple) -> str:
    return sockaddr[0].split("%", 1)[0]


def check_url(url: str, allow: AllowList = AllowList()) -> None:
    """Raise BlockedAddress unless `url` is http(s) and every address its host resolves to may be reached.

    ValueError for a URL that does not parse (no host, invalid port). Resolves DNS; a name that does not resolve
    raises socket.gaierror. For a request, use `guarded_session`: this check alone cannot stop DNS rebinding.
    """
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise BlockedAddress(f"not an http(s) URL: {url[:200]}")
    host = parts.hostname
    if not host:
        raise ValueError(f"URL has no host: {url[:200]}")
    port = parts.port or (443 if scheme == "https" else 80)  # ValueError for an invalid port
    deadline = current_deadline()
    for *_, sockaddr in resolve(host, port, deadline.remaining() if deadline else None):
        check_address(host, _sockaddr_ip(sockaddr), allow)


# Deadline


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


# Per-exchange additions to a session's allow list


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


def retry_after_seconds(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (shared by the feed and page fetchers) (delta-seconds or HTTP-date); None when absent or unreadable."""
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

"""Which peers a request may reach: public addresses, and the non-public ones an AllowList names."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import ipaddress
import re
import socket
import urllib.parse
from collections.abc import Iterable

from transforms.netguard.deadline import current_deadline
from transforms.netguard.errors import BlockedAddress, DeadlineExceeded

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

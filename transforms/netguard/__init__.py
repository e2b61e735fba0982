"""Network guard shared by every fetcher (feeds, pages): where a request may go, and how long it may take.

Not a stage: a helper package that fetch.py and the page fetcher both import (from `transforms.netguard`):
addresses.py (which peers may be reached), deadline.py (how long an exchange may take), session.py (the
connections that enforce both), errors.py (the two refusals).

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

from transforms.netguard.addresses import (
    AllowList,
    IPAddress,
    check_address,
    check_url,
    host_address,
    is_public_address,
    numeric_ipv4,
    resolve,
)
from transforms.netguard.deadline import Deadline, current_deadline
from transforms.netguard.errors import REASON, BlockedAddress, DeadlineExceeded
from transforms.netguard.session import allowing, guarded_session

__all__ = [
    "REASON",
    "AllowList",
    "BlockedAddress",
    "Deadline",
    "DeadlineExceeded",
    "IPAddress",
    "allowing",
    "check_address",
    "check_url",
    "current_deadline",
    "guarded_session",
    "host_address",
    "is_public_address",
    "numeric_ipv4",
    "resolve",
]

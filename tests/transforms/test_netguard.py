"""netguard against real loopback servers: address checks, the guarded session and the exchange deadline."""

from __future__ import annotations

import ipaddress
import shutil
import ssl
import subprocess
import time

import pytest
import requests

from tests.feed_server import FeedServer
from transforms.netguard import (
    AllowList,
    BlockedAddress,
    Deadline,
    DeadlineExceeded,
    allowing,
    check_url,
    guarded_session,
    host_address,
    is_public_address,
)

LOOPBACK = AllowList.parse(["127.0.0.1"])


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.0.9",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # shared address space (CGNAT)
        "0.0.0.0",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "198.18.0.1",
        "192.0.2.1",
        "::1",
        "::",
        "fe80::1",
        "fe80::1%eth0",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "fec0::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::127.0.0.1",  # IPv4-compatible
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2001:db8::1",
        "not an address",
    ],
)
def test_non_public_addresses(address):
    assert not is_public_address(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses(address):
    assert is_public_address(address)
    assert is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "host, expected",
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("169.254.43518", "169.254.169.254"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("10.0.0.1.", "10.0.0.1"),
        ("example.org", None),
        ("08.1.2.3", None),  # not valid octal: a name to the resolver, not an address
    ],
)
def test_numeric_host_forms_are_normalised(host, expected):
    address = host_address(host)
    assert (str(address) if address is not None else None) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",
        "http://0x7f.1/feed",
        "http://017700000001:8080/",
        "http://127.1/",
        "https://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0/",
        "http://localhost/",
    ],
)
def test_check_url_refuses_internal_targets(url):
    with pytest.raises(BlockedAddress) as caught:
        check_url(url, AllowList())
    assert caught.value.reason == "blocked_address"


def test_check_url_lets_allowed_networks_and_hosts_through():
    check_url("http://2130706433/", AllowList.parse(["127.0.0.0/8"]))
    check_url("http://0x7f.1/", AllowList.parse(["127.0.0.1"]))
    check_url("http://localhost:8080/", AllowList.parse(["localhost"]))
    check_url("http://93.184.216.34/", AllowList())  # public: no list needed
    with pytest.raises(BlockedAddress):
        check_url("http://10.0.0.2/", AllowList.parse(["10.0.0.1", "intranet.example"]))


@pytest.mark.parametrize("url", ["ftp://example.org/x", "file:///etc/passwd", "javascript:alert(1)", "gopher://x/"])
def test_check_url_refuses_other_schemes(url):
    with pytest.raises(BlockedAddress):
        check_url(url, AllowList())


@pytest.mark.parametrize("url", ["http://93.184.216.34:99999/x", "http:///path-only"])
def test_check_url_rejects_malformed_urls(url):
    with pytest.raises(ValueError):
        check_url(url, AllowList())


def test_allow_list_parses_hosts_ips_and_networks():
    allow = AllowList.parse(["Intranet.Example.", "10.1.2.3", "192.168.0.0/16", "[fd00::1]", "*.corp.example", ""])
    assert allow.allows("intranet.example", "10.9.9.9")
    assert allow.allows("other", "10.1.2.3")
    assert allow.allows("other", "192.168.44.1")
    assert allow.allows("other", "::ffff:192.168.44.1")
    assert allow.allows("other", "fd00::1")
    assert allow.allows("feeds.corp.example", None)
    assert not allow.allows("corp.example.evil", None)
    assert not allow.allows("other", "10.1.2.4")
    assert not AllowList()
    with pytest.raises(ValueError, match="not_a host"):
        AllowList.parse(["not_a host"])


# The guarded session, against servers on loopback.


def test_loopback_is_refused_by_default_without_connecting(feed_server):
    feed_server.add("/feed.xml", b"<rss/>")
    with guarded_session("test", AllowList()) as session, pytest.raises(BlockedAddress):
        session.get(feed_server.url("/feed.xml"), timeout=2)
    assert feed_server.hits("/feed.xml") == 0


def test_loopback_is_reached_when_listed(feed_server):
    feed_server.add("/feed.xml", b"<rss/>")
    for allow in (LOOPBACK, AllowList.parse(["127.0.0.0/8"])):
        with guarded_session("test-agent", allow) as session:
            response = session.get(feed_server.url("/feed.xml"), timeout=2)
        assert response.status_code == 200 and response.content == b"<rss/>"
    assert feed_server.requests[0].headers["User-Agent"] == "test-agent"


def test_numeric_loopback_forms_are_refused_by_the_session(feed_server):
    feed_server.add("/feed.xml", b"<rss/>")
    for host in ("2130706433", "0x7f.1", "017700000001"):
        with guarded_session("test", AllowList()) as session, pytest.raises(BlockedAddress):
            session.get(f"http://{host}:{feed_server.port}/feed.xml", timeout=2)
    assert feed_server.hits("/feed.xml") == 0
    with guarded_session("test", LOOPBACK) as session:  # the same forms reach the listed address
        assert session.get(f"http://0x7f.1:{feed_server.port}/feed.xml", timeout=2).content == b"<rss/>"


def test_redirect_to_an_unlisted_internal_address_is_refused(feed_server):
    with FeedServer(host="127.0.0.2") as internal:
        internal.add("/secret", b"internal data")
        feed_server.add("/feed.xml", redirect_to=internal.url("/secret"))
        with guarded_session("test", LOOPBACK) as session, pytest.raises(BlockedAddress) as caught:
            session.get(feed_server.url("/feed.xml"), timeout=2)
        assert caught.value.address == "127.0.0.2"
        assert internal.hits("/secret") == 0
    assert feed_server.hits("/feed.xml") == 1


def test_redirect_to_cloud_metadata_is_refused_before_any_connect(feed_server):
    feed_server.add("/feed.xml", redirect_to="http://169.254.169.254/latest/meta-data/")
    started = time.monotonic()
    with guarded_session("test", LOOPBACK) as session, pytest.raises(BlockedAddress):
        session.get(feed_server.url("/feed.xml"), timeout=5)
    assert time.monotonic() - started < 4  # refused, not a connect timeout to an unroutable address


def test_redirect_between_allowed_addresses_is_followed(feed_server):
    with FeedServer(host="127.0.0.2") as other:
        other.add("/feed.xml", b"<rss/>")
        feed_server.add("/old", redirect_to=other.url("/feed.xml"))
        with guarded_session("test", AllowList.parse(["127.0.0.0/8"])) as session:
            assert session.get(feed_server.url("/old"), timeout=2).content == b"<rss/>"


def test_proxies_from_the_environment_are_ignored(feed_server, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.9:9")
    feed_server.add("/feed.xml", b"<rss/>")
    with guarded_session("test", LOOPBACK) as session:
        assert session.get(feed_server.url("/feed.xml"), timeout=2).content == b"<rss/>"


# The deadline: the point of these tests is that nothing hangs, so they bound the elapsed time generously.


def test_deadline_cuts_a_server_dripping_its_headers(feed_server):
    # Each byte comes well within the read timeout, so only the deadline can end this.
    feed_server.add("/drip", b"<rss/>", header_delay=0.1)
    started = time.monotonic()
    with guarded_session("test", LOOPBACK) as session, pytest.raises(DeadlineExceeded):
        with Deadline(0.5):
            session.get(feed_server.url("/drip"), timeout=(1, 1))
    assert time.monotonic() - started < 3


def test_deadline_cuts_a_dripping_body_even_without_content_length(feed_server):
    # Without Content-Length, a cut connection looks like the end of the body: the deadline must still say so.
    feed_server.add("/drip", b"x" * 200, chunk_size=1, chunk_delay=0.05, content_length=False)
    started = time.monotonic()
    with guarded_session("test", LOOPBACK) as session, pytest.raises(DeadlineExceeded):
        with Deadline(0.5):
            response = session.get(feed_server.url("/drip"), timeout=(1, 1), stream=True)
            while response.raw.read1(1024):
                pass
    assert time.monotonic() - started < 3


def test_deadline_also_covers_a_pooled_connection(feed_server):
    feed_server.add("/fast", b"<rss/>")
    feed_server.add("/drip", b"<rss/>", header_delay=0.1)
    with guarded_session("test", LOOPBACK) as session:
        with Deadline(2):
            assert session.get(feed_server.url("/fast"), timeout=(1, 1)).content == b"<rss/>"
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded), Deadline(0.5):
            session.get(feed_server.url("/drip"), timeout=(1, 1))
        assert time.monotonic() - started < 3
    fast, drip = feed_server.requests_for("/fast")[0], feed_server.requests_for("/drip")[0]
    assert fast.client == drip.client  # the second exchange did reuse the connection


def test_an_exchange_within_its_deadline_is_untouched(feed_server):
    feed_server.add("/feed.xml", b"<rss/>" * 1000, chunk_size=512, chunk_delay=0.01)
    with guarded_session("test", LOOPBACK) as session, Deadline(5) as deadline:
        assert session.get(feed_server.url("/feed.xml"), timeout=(1, 1)).content == b"<rss/>" * 1000
    assert not deadline.expired and deadline.remaining() > 0


def test_an_expired_deadline_refuses_to_connect(feed_server):
    feed_server.add("/feed.xml", b"<rss/>")
    with guarded_session("test", LOOPBACK) as session, pytest.raises(DeadlineExceeded):
        with Deadline(0):
            session.get(feed_server.url("/feed.xml"), timeout=(1, 1))
    assert feed_server.hits("/feed.xml") == 0


def test_other_errors_inside_a_live_deadline_pass_through(feed_server):
    with guarded_session("test", LOOPBACK) as session, pytest.raises(requests.ConnectionError), Deadline(5):
        session.get(f"http://127.0.0.1:{_unused_port()}/", timeout=(1, 1))


def _unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_allowing_widens_the_list_for_one_exchange_only(feed_server):
    feed_server.add("/feed.xml", b"<rss/>")
    with guarded_session("test", AllowList()) as session:
        with allowing(LOOPBACK):
            assert session.get(feed_server.url("/feed.xml"), timeout=2).content == b"<rss/>"
        # The pooled connection to the same address is checked again, now without the extra entry.
        with pytest.raises(BlockedAddress):
            session.get(feed_server.url("/feed.xml"), timeout=2)
    assert feed_server.hits("/feed.xml") == 1


# HTTPS: the connection goes to the checked address, while SNI, the certificate check and Host keep the name.


@pytest.fixture
def tls_server(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = FeedServer()
    server._httpd.socket = context.wrap_socket(server._httpd.socket, server_side=True)
    with server:
        yield server, str(cert)


def test_https_is_guarded_and_keeps_the_name_for_tls(tls_server):
    server, cert = tls_server
    server.add("/feed.xml", b"<rss/>")
    url = f"https://localhost:{server.port}/feed.xml"
    with guarded_session("test", AllowList()) as session, pytest.raises(BlockedAddress):
        session.get(url, timeout=2, verify=cert)
    assert server.hits("/feed.xml") == 0
    with guarded_session("test", AllowList.parse(["localhost"])) as session:
        # The certificate names localhost only: this passes only if SNI and the check use the name, not the IP.
        response = session.get(url, timeout=2, verify=cert)
    assert response.content == b"<rss/>"
    assert server.requests[0].headers["Host"] == f"localhost:{server.port}"


def test_deadline_cuts_a_tls_server_dripping_its_headers(tls_server):
    server, cert = tls_server
    server.add("/drip", b"<rss/>", header_delay=0.1)
    started = time.monotonic()
    allow = AllowList.parse(["localhost"])
    with guarded_session("test", allow) as session, pytest.raises(DeadlineExceeded), Deadline(0.5):
        session.get(f"https://localhost:{server.port}/drip", timeout=(1, 1), verify=cert)
    assert time.monotonic() - started < 3

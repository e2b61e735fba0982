"""A real HTTP server on 127.0.0.1 serving canned feeds, with the misbehaviours a feed fetcher must survive.

    with FeedServer() as server:
        server.add("/feed.xml", body=b"<rss/>", content_type="application/rss+xml; charset=utf-8")
        server.add("/flaky", body=b"<rss/>", fail_times=2)          # 500, 500, then 200
        server.add("/slow", body=b"<rss/>", delay=1.5)              # sleeps before answering
        server.add("/old", redirect_to="/feed.xml")                 # 302 to /feed.xml
        server.add("/busy", status=429, retry_after=3600)           # 429 with Retry-After: 3600
        server.add("/cached", body=b"<rss/>", etag='"v1"')          # 304 on If-None-Match: "v1"
        fetch(server.url("/feed.xml"))
        assert server.hits("/flaky") == 3
        assert server.requests[0].headers["User-Agent"].startswith("newsbeam/")

Tests use it through the `feed_server` fixture in tests/conftest.py. Unknown paths answer 404.
"""

from __future__ import annotations

import dataclasses
import email.utils
import gzip as gzip_module
import http.server
import socket
import sys
import threading
import time
from email.message import Message
from pathlib import Path

_FILE_CONTENT_TYPES = {
    ".rss": "application/rss+xml",
    ".atom": "application/atom+xml",
    ".json": "application/feed+json",
    ".xml": "application/xml",
    ".rdf": "application/rdf+xml",
}


@dataclasses.dataclass
class Route:
    """How one path answers. See FeedServer.add for the meaning of each field."""

    body: bytes = b""
    content_type: str = "application/xml"
    status: int = 200
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    fail_times: int = 0
    fail_status: int = 500
    delay: float = 0.0
    chunk_delay: float = 0.0
    chunk_size: int = 1024
    redirect_to: str | None = None
    redirect_status: int = 302
    gzip: bool = False
    retry_after: str | int | float | None = None
    etag: str | None = None
    last_modified: str | None = None
    content_length: bool = True
    chunked: bool = False
    header_delay: float = 0.0


@dataclasses.dataclass(frozen=True)
class LoggedRequest:
    """One request as received: `headers` is case-insensitive (`headers["user-agent"]` works).

    `client` is the client's (host, port): two requests with the same one came over one pooled connection.
    """

    method: str
    path: str
    headers: Message
    client: tuple[str, int]
    time: float


class FeedServer:
    """A threaded HTTP server on an ephemeral loopback port; a context manager that starts and stops it."""

    def __init__(self, host: str = "127.0.0.1"):
        self._routes: dict[str, Route] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self.requests: list[LoggedRequest] = []
        self._httpd = _Server((host, 0), _Handler)
        self._httpd.feed_server = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>`."""
        return f"http://{self._httpd.server_address[0]}:{self.port}"

    def url(self, path: str) -> str:
        """The full URL of `path` on this server."""
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def add(
        self,
        path: str,
        body: bytes | str = b"",
        *,
        content_type: str = "application/xml",
        status: int = 200,
        headers: dict[str, str] | None = None,
        fail_times: int = 0,
        fail_status: int = 500,
        delay: float = 0.0,
        chunk_delay: float = 0.0,
        chunk_size: int = 1024,
        redirect_to: str | None = None,
        redirect_status: int = 302,
        gzip: bool = False,
        retry_after: str | int | float | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
        content_length: bool = True,
        chunked: bool = False,
        header_delay: float = 0.0,
    ) -> Route:
        """Serve `body` at `path` (query strings are ignored when matching).

        fail_times: answer `fail_status` (default 500) that many times, then normally.
        delay: seconds to wait before answering (for read timeouts); chunk_delay: seconds between chunks of
        `chunk_size` bytes of the body (a trickling server).
        redirect_to: answer `redirect_status` with this Location (a path or a full URL) instead of the body.
        status: any status; a non-2xx one is sent with `body` (ETag / Last-Modified apply to 2xx only).
        gzip: send the body gzip-compressed with Content-Encoding: gzip.
        retry_after: sent as Retry-After on every 429 or 503 answer (seconds or an HTTP-date string).
        etag / last_modified: sent as ETag / Last-Modified; a matching If-None-Match / If-Modified-Since gets 304.
        content_length: False leaves out Content-Length (the body then ends when the connection closes).
        chunked: send the body with Transfer-Encoding: chunked, in pieces of `chunk_size` bytes.
        header_delay: seconds between single bytes of the status line and headers (a server dripping headers,
        which never trips a read timeout).
        """
        route = Route(
            body=body.encode("utf-8") if isinstance(body, str) else bytes(body),
            content_type=content_type,
            status=status,
            headers=dict(headers or {}),
            fail_times=fail_times,
            fail_status=fail_status,
            delay=delay,
            chunk_delay=chunk_delay,
            chunk_size=chunk_size,
            redirect_to=redirect_to,
            redirect_status=redirect_status,
            gzip=gzip,
            retry_after=retry_after,
            etag=etag,
            last_modified=last_modified,
            content_length=content_length,
            chunked=chunked,
            header_delay=header_delay,
        )
        with self._lock:
            self._routes[path] = route
        return route

    def add_file(self, path: str, file_path: str | Path, *, content_type: str | None = None, **options) -> Route:
        """Serve the bytes of `file_path` at `path`; the content type is guessed from its extension if not given."""
        file_path = Path(file_path)
        if content_type is None:
            content_type = _FILE_CONTENT_TYPES.get(file_path.suffix.lower(), "application/octet-stream")
        return self.add(path, file_path.read_bytes(), content_type=content_type, **options)

    def hits(self, path: str) -> int:
        """How many requests `path` has received (query strings ignored)."""
        with self._lock:
            return sum(1 for request in self.requests if request.path.split("?", 1)[0] == path)

    def requests_for(self, path: str) -> list[LoggedRequest]:
        """The requests `path` has received, in order."""
        with self._lock:
            return [request for request in self.requests if request.path.split("?", 1)[0] == path]

    def start(self) -> FeedServer:
        """Start serving in a daemon thread."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="feed-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop quickly: wake handlers that are sleeping, cut open connections, close the socket."""
        self._stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=2)
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._httpd.server_close()

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # Called from handler threads.

    def _route(self, path: str) -> Route | None:
        with self._lock:
            return self._routes.get(path.split("?", 1)[0])

    def _log(self, request: LoggedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _track(self, connection: socket.socket, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # Do not wait for handler threads on close: a handler sleeping in `delay` must not hold up the test suite.
    block_on_close = False
    feed_server: FeedServer

    def handle_error(self, request, client_address):
        # A client that gave up (timeout tests) or a stop() in mid-answer is expected, not worth a traceback.
        if self.feed_server._stopping.is_set() or isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do, so connection pooling is exercised
    # TCP_NODELAY, as nginx and most servers set on keep-alive connections. Without it the body's last segment
    # waited for the ACK of the headers, which the client delays (up to 40 ms): about 30 ms per response that
    # no real server adds, and benchmarks/e2e.py's 100 feeds paid it in both contenders.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self):
        super().setup()
        self.server.feed_server._track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.feed_server._track(self.connection, False)

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass

    def do_HEAD(self):
        self._answer(send_body=False)

    def do_GET(self):
        self._answer(send_body=True)

    def _answer(self, send_body: bool) -> None:
        server = self.server.feed_server
        server._log(LoggedRequest(self.command, self.path, self.headers, self.client_address[:2], time.time()))
        route = server._route(self.path)
        if route is None:
            self._send(404, b"not found\n", {"Content-Type": "text/plain"}, send_body)
            return
        if route.delay and server._stopping.wait(route.delay):
            self.close_connection = True
            return
        with server._lock:  # fail_times counts down across concurrent requests
            failing = route.fail_times > 0
            if failing:
                route.fail_times -= 1
        status = route.fail_status if failing else route.status
        headers = {} if failing else dict(route.headers)
        if route.retry_after is not None and status in (429, 503):
            headers["Retry-After"] = str(route.retry_after)
        if failing:
            self._send(status, f"status {status}\n".encode(), {"Content-Type": "text/plain", **headers}, send_body)
            return
        if route.redirect_to is not None:
            # Sent as given: a bare path makes the client resolve a relative Location, as it must.
            self._send(route.redirect_status, b"", {"Location": route.redirect_to, **headers}, send_body)
            return
        if 200 <= status < 300:
            if route.etag is not None:
                headers["ETag"] = route.etag
            if route.last_modified is not None:
                headers["Last-Modified"] = route.last_modified
            if self._not_modified(route):
                self._send(304, b"", headers, send_body=False)
                return
        body = route.body
        if route.gzip:
            body = gzip_module.compress(body)
            headers["Content-Encoding"] = "gzip"
        headers = {"Content-Type": route.content_type, **headers}
        self._send(status, body, headers, send_body, route)

    def _not_modified(self, route: Route) -> bool:
        # RFC 9110 13.2.2: If-None-Match wins; If-Modified-Since only counts when there is none.
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None:
            tags = [tag.strip() for tag in if_none_match.split(",")]
            return route.etag is not None and ("*" in tags or route.etag in tags)
        if_modified_since = self.headers.get("If-Modified-Since")
        if if_modified_since is None or route.last_modified is None:
            return False
        try:
            since = email.utils.parsedate_to_datetime(if_modified_since)
            modified = email.utils.parsedate_to_datetime(route.last_modified)
        except (TypeError, ValueError):
            return False
        return modified <= since

    def _send(
        self, status: int, body: bytes, headers: dict[str, str], send_body: bool, route: Route | None = None
    ) -> None:
        chunked = route is not None and route.chunked
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif route is None or route.content_length:
            self.send_header("Content-Length", str(len(body)))
        else:
            self.send_header("Connection", "close")  # the body ends when the connection does
            self.close_connection = True
        stopping = self.server.feed_server._stopping
        if route is not None and route.header_delay:
            head = b"".join(self._headers_buffer) + b"\r\n"
            self._headers_buffer = []
            for index in range(len(head)):
                self.wfile.write(head[index : index + 1])
                self.wfile.flush()
                if stopping.wait(route.header_delay):
                    self.close_connection = True
                    return
        else:
            self.end_headers()
        if not send_body:
            return
        size = route.chunk_size if route is not None and (route.chunked or route.chunk_delay) else len(body) or 1
        for start in range(0, len(body), size):
            piece = body[start : start + size]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if route is not None and route.chunk_delay and stopping.wait(route.chunk_delay):
                self.close_connection = True
                return
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

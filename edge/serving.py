"""The HTTP server: uvicorn, with the limits a public endpoint needs and uvicorn lacks.

uvicorn has no deadline for a request's head: a client that connects and sends nothing,
or one header byte every few seconds (slowloris), holds its connection forever, and any
data received cancels the keep-alive timer. `GuardedHttp` adds, per connection:
- a deadline for the request line and headers (`head_timeout_s`, from the first byte of
  a request, or from the connection for the first one) and a cap on their size (431);
- a body that must keep coming: no chunk for `body_idle_s` (while the edge is reading)
  ends the request with 408.
Nothing here holds a worker: the server is one event loop; these bound sockets and memory.

`raise_open_files_limit` lifts the process's soft limit on open files to its hard limit:
every WHEP viewer holds two descriptors (its ICE socket and the duplicate the fan-out
sends on, edge/streaming/udp_batch.py) and every HTTP client one, so the common default
of 1,024 would refuse the 500th viewer with EMFILE while the kernel allows far more. (The
embedded chDB lifts it as ClickHouse does when it loads; with a ClickHouse server, nothing
else did.)

`proxy_headers` is off: the client address is decided in one place, from
`WAVE_TRUSTED_PROXIES` (core/client_address.py). uvicorn's own proxy handling would
trust X-Forwarded-For from any loopback peer, whatever the operator configured.
"""

from __future__ import annotations

import asyncio
import logging
import resource

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from edge.settings import Settings


def _response(status: bytes, body: bytes) -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"x-content-type-options: nosniff\r\nreferrer-policy: no-referrer\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


_TOO_SLOW = _response(b"408 Request Timeout",
                      b'{"error":"request_timeout","detail":{"path":"$","message":"the request came too slowly"}}')
_TOO_BIG = _response(b"431 Request Header Fields Too Large",
                     b'{"error":"headers_too_large","detail":{"path":"$.headers","message":"request head over the limit"}}')


_MALFORMED = _response(b"400 Bad Request",
                      b'{"error":"malformed_http","detail":{"path":"$","message":"the request is not valid HTTP/1.1'
                      b' (framing, chunk sizes or Content-Length)"}}')


class GuardedHttp(HttpToolsProtocol):
    head_timeout_s = 10.0
    body_idle_s = 15.0
    max_head_bytes = 32 * 1024

    def send_400_response(self, msg: str) -> None:
        """A request the HTTP parser refuses (a bad chunk size, Content-Length with chunked,
        a negative length) is answered in the one error shape, with the baseline headers,
        not uvicorn's text/plain: clients parse every 4xx as JSON."""
        self._disarm()
        self.transport.write(_MALFORMED)
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._guard: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        super().connection_made(transport)
        self._arm(self.head_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        if self._guard is None:
            self._arm(self.head_timeout_s)

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._arm(self.body_idle_s)  # until the message is complete (at once when it has no body)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._arm(self.body_idle_s)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_head_bytes and not self.transport.is_closing():
            self.transport.write(_TOO_BIG)
            self.transport.close()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._guard = self.loop.call_later(seconds, self._expired, seconds)

    def _disarm(self) -> None:
        if self._guard is not None:
            self._guard.cancel()
            self._guard = None

    def _expired(self, seconds: float) -> None:
        self._guard = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:  # the edge is not reading (back-pressure): not the client's delay
            self._arm(seconds)
            return
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(_TOO_SLOW)
        self.transport.close()


def guarded(settings: Settings) -> type[GuardedHttp]:
    """The protocol class with this edge's limits."""
    return type("EdgeHttp", (GuardedHttp,), {"head_timeout_s": settings.head_timeout_s,
                                              "body_idle_s": settings.body_idle_s,
                                              "max_head_bytes": settings.max_head_bytes})


def config(app, settings: Settings, host: str, port: int, **overrides) -> uvicorn.Config:
    """The one uvicorn configuration, for `wave-edge serve` and the tests' servers alike."""
    options = dict(
        host=host,
        port=port,
        http=guarded(settings),
        proxy_headers=False,
        server_header=False,
        log_level="warning",
        access_log=False,  # access logs would hold viewers' IPs; metrics count requests
        timeout_keep_alive=30,
        timeout_graceful_shutdown=15,
    )
    options.update(overrides)
    return uvicorn.Config(app, **options)


log = logging.getLogger(__name__)
MAX_OPEN_FILES = 1_048_576  # when the hard limit is unlimited


def raise_open_files_limit() -> int:
    """Set the soft RLIMIT_NOFILE to the hard one (at most MAX_OPEN_FILES); returns the
    soft limit in force. The event loop uses epoll, so descriptors past 1,024 are fine."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = MAX_OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard, MAX_OPEN_FILES)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
        except (ValueError, OSError) as exc:
            log.warning("open files limit stays at %d (raising it to %d failed: %s)", soft, target, exc)
    return soft

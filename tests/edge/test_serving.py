"""Slow and bloated clients against the real server (edge/serving.py), over raw sockets."""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlsplit

import pytest

from tests.conftest import consent


def _connect(server) -> socket.socket:
    url = urlsplit(server.base_url)
    sock = socket.create_connection((url.hostname, url.port), timeout=10)
    return sock


def _read_all(sock: socket.socket, timeout: float = 10) -> bytes:
    """Everything until the server closes the connection."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@pytest.fixture
def strict(server_factory):
    return server_factory(head_timeout_s=1.0, body_idle_s=1.0)


def test_slowloris_connections_are_closed_and_do_not_block_others(strict):
    idle = [_connect(strict) for _ in range(50)]  # connect, send nothing
    trickling = [_connect(strict) for _ in range(50)]  # a header byte now and then
    for sock in trickling:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    assert strict.http.get("/healthz").status_code == 200  # the edge answers the others meanwhile
    assert time.monotonic() - started < 1.0
    for _ in range(3):
        time.sleep(0.4)
        for sock in trickling:
            try:
                sock.sendall(b"X")
            except OSError:
                pass
    for sock in idle + trickling:
        answer = _read_all(sock)  # returns only because the server closed the connection
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer[:80]
        sock.close()
    assert time.monotonic() - started < 5.0


def test_a_slow_body_is_cut_with_408(strict, tenant):
    sock = _connect(strict)
    sock.sendall(b"POST /v1/consent HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 500\r\n\r\n{\"tenant_id\":")
    answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"] == "request_timeout"


def test_headers_over_the_limit_get_431(strict):
    sock = _connect(strict)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 40_000 + b"\r\n\r\n")
    answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:80]


def test_normal_requests_are_not_affected(strict, tenant):
    assert consent(strict.http, tenant.tenant_id, "v1").status_code == 201
    sock = _connect(strict)  # a keep-alive connection with two requests, in time
    for _ in range(2):
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    sock.close()


def test_forwarded_for_from_an_untrusted_loopback_peer_is_ignored(server_factory, tenant_factory):
    """uvicorn's proxy_headers would believe X-Forwarded-For from any loopback peer; the
    edge believes only WAVE_TRUSTED_PROXIES (none here), so the stored address is the peer."""
    server = server_factory(trusted_proxies=())
    t, _ = tenant_factory(ip_mode="full")
    assert consent(server.http, t.tenant_id, "v", ).status_code == 201
    r = server.http.post("/v1/consent", json={"tenant_id": t.tenant_id, "viewer_id": "w", "purposes": ["analytics"],
                                              "policy_version": "v1"}, headers={"x-forwarded-for": "81.2.69.142"})
    assert r.status_code == 201
    ips = {row[0] for row in server.edge.store.rows(
        "SELECT DISTINCT IPv6NumToString(ip) FROM consents WHERE tenant_id = {t:String}", {"t": t.tenant_id})}
    assert ips == {"::ffff:127.0.0.1"}


@pytest.mark.parametrize("request_bytes", [
    b"POST /v1/consent HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n0\r\n\r\n",
    b"POST /v1/consent HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"POST /v1/consent HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
], ids=["chunk-size", "negative-length", "length-and-chunked"])
def test_malformed_http_framing_is_answered_in_the_json_error_shape(strict, request_bytes):
    sock = _connect(strict)
    sock.sendall(request_bytes)
    head, body = _read_all(sock).split(b"\r\n\r\n", 1)
    sock.close()
    assert head.startswith(b"HTTP/1.1 400"), head
    assert b"content-type: application/json" in head.lower() and b"x-content-type-options: nosniff" in head.lower()
    assert json.loads(body)["error"] == "malformed_http"


def test_a_client_that_hangs_up_mid_body_is_not_a_server_error(strict, tenant):
    sock = _connect(strict)
    sock.sendall(b"POST /v1/collect HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 500\r\n\r\n{\"tenant_id\":")
    time.sleep(0.2)
    sock.close()
    time.sleep(0.5)
    counted = [line for line in strict.http.get("/metrics").text.splitlines()
               if line.startswith("wave_http_requests_total") and "/v1/collect" in line]
    assert counted and not any('status="500"' in line for line in counted), counted

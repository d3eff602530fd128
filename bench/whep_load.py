"""N WHEP viewers of one stream that count whole frames instead of decoding them.

    python bench/whep_load.py BASE_URL STREAM_ID VIEWERS SECONDS [EDGE_PID]
        -> {"viewers", "connected", "failed", "failures", "fps": [...], "edge_cpu": cores,
            "load_cpu": cores, "receive": "udp_gro, counted in C", "udp_gro" or "one datagram per read"}

Several of these can share a step (bench/edge.py `--load-processes`): with
`WHEP_LOAD_BARRIER` (a directory) and `WHEP_LOAD_PARTIES` set, each connects its viewers
and then waits for the others, so that all count frames in the same window.

With EDGE_PID (same machine), `edge_cpu` is the CPU time the edge process used during the
counting window divided by the window (1.0 = one core busy): a figure the other load on a
shared machine changes far less than frame rates. `load_cpu` is the same for this process:
near 1.0 it, not the edge, is what a step measures.

aiortc decodes everything it receives, and before decoding it parses every datagram as
STUN, queues it, parses it into objects, keeps receiver statistics, a NACK generator and a
jitter buffer, with several awaits per packet: with N viewers in one Python process that
costs several times the edge's sending and would measure this process, not the edge. So
once a viewer is connected its SRTP packets are taken where they arrive, decrypted with
the viewer's own SRTP session (a forged or broken packet fails authentication and is not
counted) and counted: in C (bench/rtp_count.c, all viewers' sockets in one epoll set),
or in Python where `make` did not build it. STUN and DTLS take aioice's and aiortc's path
as before; the edge's SRTCP is left unread by the C counter (so these viewers report no
LSR and the edge no RTT for them). A frame counts when its last packet (RTP marker) arrives and
every sequence number since the previous frame's last packet arrived too: a complete
frame, in order, which is what the edge delivered. The viewers then send no NACK or PLI
(none are needed on loopback; the edge's RTCP handling is tested in
tests/edge/test_rtp_fanout.py and tests/edge/test_whep.py).

A viewer that could not connect (WHEP refused, e.g. 429 from an abuse limit, or ICE never
connected) is not a viewer at 0 fps: it is counted in `failed`, with the reasons in
`failures`, and the process exits 1, so that the caller reports an error, not a capacity.
A viewer that connected and was then ended by the edge (an overloaded edge's ICE consent
lapsing) is a delivery failure of that step, not a refusal: it is counted in `dropped`
and its frame rate is what it got (0 fps if it got nothing in the window).
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import socket
import sys
import time
from pathlib import Path

import httpx
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
import pylibsrtp
from aioice.ice import StunProtocol
from aiortc.rtcdtlstransport import RTCDtlsTransport

counts: dict[int, int] = {}  # id(DTLS transport) -> complete frames
_last: dict[int, tuple[int, bool]] = {}  # id(DTLS transport) -> (last sequence number, frame broken)


def _count(key: int, data: bytes) -> None:
    """One decrypted RTP packet of viewer `key`: a frame counts at its last packet if no
    sequence number was missing since the previous frame's last."""
    seq = (data[2] << 8) | data[3]
    last = _last.get(key)
    broken = last is not None and (last[1] or (seq - last[0]) & 0xFFFF != 1)
    if data[1] & 0x80:  # marker: the frame's last packet
        if not broken:
            counts[key] = counts.get(key, 0) + 1
        broken = False
    _last[key] = (seq, broken)


async def _count_frame_packets(transport: RTCDtlsTransport, data: bytes, arrival_time_ms: int) -> None:
    """Replaces aiortc's RTP parsing and routing, after SRTP decryption."""
    _count(id(transport), data)


RTCDtlsTransport._handle_rtp_data = _count_frame_packets

# Once a viewer is connected, even aiortc's path to `_handle_rtp_data` (aioice parsing every
# datagram as STUN first, a queue, the DTLS transport's receive loop, two clock reads) costs
# more than the edge's send of the packet. So its SRTP packets are taken where they arrive,
# decrypted with the viewer's own SRTP session and counted; STUN, DTLS and RTCP go on as
# before. Keyed as above, so a viewer's count continues across the switch.
_direct: dict[int, tuple] = {}  # id(aioice protocol) -> (SRTP session, key)
_datagram_received = StunProtocol.datagram_received


def _receive(protocol: StunProtocol, data: bytes, addr) -> None:
    direct = _direct.get(id(protocol))
    if direct is not None and 127 < data[0] < 192 and not 191 < data[1] < 224:  # SRTP, not SRTCP
        try:
            data = direct[0].unprotect(data)
        except pylibsrtp.Error:  # fails authentication or replayed: not counted
            return
        _count(direct[1], data)
        return
    _datagram_received(protocol, data, addr)


StunProtocol.datagram_received = _receive

# The viewers' sockets receive with UDP generic receive offload: a run of equal-size
# datagrams the edge sent in one segmented send (UDP_SEGMENT) arrives in one read, with
# its segment size beside it, and is split here. On loopback the sender's system call
# also does the receiving socket's work for every datagram it delivers, which on a real
# network happens on the viewer's machine; with GRO it is done once per run, and this
# process reads once per run instead of once per datagram (measured at the 640x360
# capacity stream: no difference beyond noise, its frames being short runs; bench/RESULTS.md).
# Datagrams sent one at a time (every datagram of the per-viewer path, STUN, DTLS, RTCP)
# arrive one at a time as before.
UDP_GRO = getattr(socket, "UDP_GRO", 104)  # linux/udp.h; Python 3.11 does not name it
_GRO_CONTROL = socket.CMSG_SPACE(4)
receive_mode = {"mode": "one datagram per read"}


def _read_runs(protocol: StunProtocol, sock: socket.socket) -> None:
    while True:
        try:
            data, ancdata, _flags, addr = sock.recvmsg(65536, _GRO_CONTROL)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # an ICMP error reported on the socket: nothing to read
            continue
        size = len(data)
        for level, kind, value in ancdata:
            if level == socket.SOL_UDP and kind == UDP_GRO:
                size = int.from_bytes(value, sys.byteorder) or size
        if size >= len(data):
            _receive(protocol, data, addr)
            continue
        for at in range(0, len(data), size):
            _receive(protocol, data[at:at + size], addr)


# The same reading, decrypting and counting in C (bench/rtp_count.c, built by `make` as
# build/rtp_count.so): one call per wake-up of a viewer's socket instead of Python per
# packet, which cost this process about as much CPU per viewer as the edge spent sending
# (bench/RESULTS.md, "Streaming"). libsrtp is pylibsrtp's own (`srtp_unprotect` through
# the pointer its binding exports, on the viewer's own session). It also leaves the edge's
# SRTCP unread (see rtp_count.c). Python's path above is the fallback when the library is
# not built.
COUNTER = Path(__file__).resolve().parents[1] / "build" / "rtp_count.so"
_COUNTER_CDEF = """
struct wave_count_viewer {
    void *unprotect;
    void *srtp;
    int fd;
    int started;
    int broken;
    uint16_t last_seq;
    uint64_t frames;
    uint64_t packets;
    uint64_t rejected;
    uint64_t rtcp;
};
int wave_count_drain(struct wave_count_viewer *v, uint8_t *buf, int size, uint8_t *other, int cap,
                     uint8_t *addr, uint32_t *addr_len);
int wave_count_poll(int epfd, struct wave_count_viewer **viewers, int max_fd, uint8_t *buf, int size,
                    uint8_t *other, int cap, uint8_t *addr, uint32_t *addr_len, int *which);
"""
MAX_FD = 65536
_counter: dict = {}
_native_counts: dict[int, object] = {}  # id(DTLS transport) -> its struct wave_count_viewer


def _load_counter() -> dict | None:
    """ffi, lib, srtp_unprotect's address and the shared buffers, once; None without the library."""
    if not _counter:
        _counter["loaded"] = None
        source = COUNTER.parents[1] / "bench" / "rtp_count.c"
        if COUNTER.exists() and COUNTER.stat().st_mtime >= source.stat().st_mtime:
            import cffi

            ffi = cffi.FFI()
            ffi.cdef(_COUNTER_CDEF)
            lib = ffi.dlopen(str(COUNTER))
            unprotect = int(pylibsrtp.ffi.cast("uintptr_t", pylibsrtp.ffi.addressof(pylibsrtp.lib, "srtp_unprotect")))
            _counter["loaded"] = {"ffi": ffi, "lib": lib, "unprotect": ffi.cast("void *", unprotect),
                                  "buf": ffi.new("uint8_t[]", 65536), "other": ffi.new("uint8_t[]", 2048),
                                  "addr": ffi.new("uint8_t[]", 128), "addr_len": ffi.new("uint32_t *"),
                                  "which": ffi.new("int *"), "epoll": None,
                                  "viewers": ffi.new("struct wave_count_viewer *[]", MAX_FD), "protocols": {}}
    return _counter["loaded"]


def _address(raw: bytes) -> tuple:
    family = int.from_bytes(raw[:2], sys.byteorder)
    port = int.from_bytes(raw[2:4], "big")
    if family == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, raw[8:24]), port
    return socket.inet_ntop(socket.AF_INET, raw[4:8]), port


def _poll(c: dict) -> None:
    """The epoll set of every counted viewer's socket is readable: drain them all in C;
    hand each datagram that is not SRTP to its viewer's aioice protocol."""
    ffi, poll, buf, other, addr, addr_len, which = (c["ffi"], c["lib"].wave_count_poll, c["buf"], c["other"],
                                                    c["addr"], c["addr_len"], c["which"])
    epfd, viewers, protocols = c["epoll"].fileno(), c["viewers"], c["protocols"]
    while True:
        addr_len[0] = 128
        n = poll(epfd, viewers, MAX_FD, buf, 65536, other, 2048, addr, addr_len, which)
        if n <= 0:  # nothing more ready (a read error on one socket is skipped in C)
            return
        protocol = protocols.get(which[0])
        if protocol is not None:
            _datagram_received(protocol, ffi.buffer(other, n)[:], _address(ffi.buffer(addr, addr_len[0])[:]))


def _read_with_gro(protocol: StunProtocol, session=None, key: int | None = None) -> None:
    """Read this viewer's socket with GRO from now on (asyncio's selector transport keeps
    the socket; its reader is swapped for the C counter's epoll set, or `_read_runs`)."""
    transport = protocol.transport
    sock = getattr(transport, "_sock", None)
    if not isinstance(sock, socket.socket):
        return
    try:
        sock.setsockopt(socket.SOL_UDP, UDP_GRO, 1)
    except OSError:
        return  # a kernel without UDP GRO: one datagram per read, as before
    loop = asyncio.get_running_loop()
    loop._remove_reader(sock.fileno())
    c = _load_counter() if session is not None else None
    if c is not None:
        viewer = c["ffi"].new("struct wave_count_viewer *")
        viewer.unprotect = c["unprotect"]
        # pylibsrtp keeps its `srtp_t` in `_srtp[0]` (as edge/streaming/native_rtp.py relies on)
        viewer.srtp = c["ffi"].cast("void *", int(pylibsrtp.ffi.cast("uintptr_t", session._srtp[0])))
        fd = viewer.fd = sock.fileno()
        if fd < MAX_FD:
            _native_counts[key] = (viewer, session)  # the session outlives the struct that points into it
            if c["epoll"] is None:
                c["epoll"] = select.epoll()
                loop.add_reader(c["epoll"].fileno(), _poll, c)
            c["viewers"][fd], c["protocols"][fd] = viewer, protocol
            c["epoll"].register(fd, select.EPOLLIN)
            receive_mode["mode"] = "udp_gro, counted in C"
            return
    loop._add_reader(sock.fileno(), _read_runs, protocol, sock)
    receive_mode["mode"] = "udp_gro"


def frame_counts() -> dict[int, int]:
    """Complete frames per viewer so far, whichever path counted them."""
    out = dict(counts)
    for key, (viewer, _) in _native_counts.items():
        out[key] = out.get(key, 0) + viewer.frames
    return out


def take_direct(pc: RTCPeerConnection) -> None:
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        pair = dtls.transport._connection._nominated.get(1)
        if pair is not None and dtls._rx_srtp is not None and id(pair.protocol) not in _direct:
            _direct[id(pair.protocol)] = (dtls._rx_srtp, id(dtls))
            _read_with_gro(pair.protocol, dtls._rx_srtp, id(dtls))


ever_connected: set[int] = set()  # id(pc) of the viewers that connected at some point
busy: dict[str, int] = {"refusals": 0}  # 503 edge_busy answers waited out (edge/loop_lag.py)
# A viewer still refused after this long: the edge is full at this step (tests shorten it).
BUSY_GIVE_UP_S = float(os.environ.get("WHEP_LOAD_BUSY_GIVE_UP_S") or 30.0)


class EdgeFull(Exception):
    """The edge kept answering 503 edge_busy: it admits no more viewers (not a failure)."""


async def viewer(http: httpx.AsyncClient, stream_id: str) -> RTCPeerConnection:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))

    @pc.on("connectionstatechange")
    def changed():
        if pc.connectionState == "connected":
            ever_connected.add(id(pc))
            # At once, not after the last viewer connected: with hundreds connecting one
            # after another, aiortc's path for the first ones' packets filled this process,
            # their sockets overflowed, the edge's ICE consent checks were dropped with the
            # media, and the edge ended them as gone (bench/RESULTS.md, "Streaming").
            take_direct(pc)

    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    give_up = time.monotonic() + BUSY_GIVE_UP_S
    while True:  # as a WHEP client should: an edge that is full says when to come back
        r = await http.post(f"/whep/{stream_id}", content=pc.localDescription.sdp,
                            headers={"content-type": "application/sdp"})
        if r.status_code != 503 or "retry-after" not in r.headers:
            break
        busy["refusals"] += 1
        if time.monotonic() > give_up:
            await pc.close()
            raise EdgeFull(r.text[:200])
        await asyncio.sleep(float(r.headers["retry-after"]))
    r.raise_for_status()
    await pc.setRemoteDescription(RTCSessionDescription(r.text, "answer"))
    return pc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"WHEP {exc.response.status_code}: {exc.response.text[:200]}"
    return f"{type(exc).__name__}: {exc}"[:200]


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process (all its threads), from /proc."""
    if pid is None:
        return None
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def barrier(timeout_s: float = 300) -> None:
    """With several load processes for one step (bench/edge.py `--load-processes`): wait
    until all of them have connected their viewers, so that they count in the same window
    (`WHEP_LOAD_BARRIER`: a directory; `WHEP_LOAD_PARTIES`: how many processes)."""
    directory, parties = os.environ.get("WHEP_LOAD_BARRIER"), int(os.environ.get("WHEP_LOAD_PARTIES") or 1)
    if not directory or parties <= 1:
        return
    (Path(directory) / str(os.getpid())).touch()
    deadline = time.monotonic() + timeout_s
    while len(list(Path(directory).iterdir())) < parties and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def main(base: str, stream_id: str, n: int, seconds: float, edge_pid: int | None = None) -> int:
    failures: dict[str, int] = {}
    pcs: list[RTCPeerConnection] = []
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        turned_away = 0
        for i in range(n):
            try:
                pcs.append(await viewer(http, stream_id))
            except EdgeFull:
                turned_away = n - i  # this viewer and the ones not yet tried: the step is past capacity
                break
            except (httpx.HTTPError, ValueError) as exc:
                failures[_reason(exc)] = failures.get(_reason(exc), 0) + 1
        await asyncio.sleep(3)  # connect and reach the first keyframe
        for _ in range(1200):  # a loaded machine may take long to connect the last ones
            if all(pc.connectionState in ("connected", "failed", "closed") for pc in pcs):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)  # the last ones reach their first keyframe
        dropped = 0
        for pc in pcs:
            if id(pc) not in ever_connected:
                failures[f"ICE {pc.connectionState}"] = failures.get(f"ICE {pc.connectionState}", 0) + 1
            elif pc.connectionState != "connected":
                dropped += 1  # connected, then ended by the edge (e.g. consent) before the window
        await barrier()
        before = frame_counts()
        cpu_before, own_before = cpu_seconds(edge_pid), time.process_time()
        started = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - started
        cpu_after, own_after = cpu_seconds(edge_pid), time.process_time()
        after = frame_counts()
        fps = sorted(round((after[k] - before.get(k, 0)) / elapsed, 1) for k in after)
        for pc in pcs:
            await pc.close()
    failed = sum(failures.values())
    fps += [0.0] * (n - failed - turned_away - len(fps))  # connected, and got no frame: the edge's doing
    edge_cpu = round((cpu_after - cpu_before) / elapsed, 3) if edge_pid else None
    load_cpu = round((own_after - own_before) / elapsed, 3)  # this process: is it the limit?
    print(json.dumps({"viewers": n, "connected": n - failed - turned_away, "failed": failed, "failures": failures,
                      "dropped": dropped, "refused_busy": busy["refusals"], "turned_away_busy": turned_away,
                      "fps": fps, "edge_cpu": edge_cpu, "load_cpu": load_cpu, "receive": receive_mode["mode"]}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]),
                              int(sys.argv[5]) if len(sys.argv) > 5 else None)))

"""Send one frame's datagrams to one viewer in as few syscalls as the kernel allows.

On the shared WHEP path the edge's CPU per viewer was mostly the kernel's per-datagram
send (`sendto`, 57% in py-spy; bench/RESULTS.md, "Streaming"). Linux UDP segmentation
offload (`UDP_SEGMENT`, 4.18+) takes one buffer of equal-size datagrams (the last may be
shorter) and one destination in one `sendmsg`: the socket, route and buffer work is paid
once per run of datagrams, and the receiver still gets ordinary datagrams. A frame's RTP
packets fit that shape: H.264 FU-A fragments are cut to one size, so after SRTP they are
equal up to the frame's last packet. Measured on loopback here: 1.7 µs per datagram
against 4.9 for `sendto` one by one.

Order is kept with the asyncio transport's own buffer: while it holds anything (the
socket was full), every datagram goes through `transport.sendto` behind it, and a
send refused for a full socket (or any other error) hands its datagrams and the rest to
it too, which reports errors to the protocol as before. A kernel or device that refuses
segmentation (`EINVAL`, `EIO`, `ENOPROTOOPT`) turns it off for the process, and the
datagrams go one by one as before.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from asyncio import DatagramTransport

UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)  # linux/udp.h; Python 3.11 does not name it
MAX_SEGMENTS = 64  # UDP_MAX_SEGMENTS in the kernel
MAX_BYTES = 65_000  # one UDP datagram's payload limit, with room for headers
_SEGMENT_SIZE = struct.Struct("=H")
_UNSUPPORTED = {errno.EINVAL, errno.EIO, errno.ENOPROTOOPT, errno.EOPNOTSUPP}

enabled = True  # off for the process once the kernel refuses segmentation


def runs(datagrams: list[bytes]) -> list[list[bytes]]:
    """Split `datagrams`, in order, into runs one segmented send can carry: every datagram
    of a run as long as its first, except the last, which may be shorter."""
    out: list[list[bytes]] = []
    run: list[bytes] = []
    size = total = 0
    for data in datagrams:
        n = len(data)
        if run and n <= size and len(run) < MAX_SEGMENTS and total + n <= MAX_BYTES:
            run.append(data)
            total += n
            if n < size:  # a shorter one ends the run
                out.append(run)
                run, size, total = [], 0, 0
            continue
        if run:
            out.append(run)
        run, size, total = [data], n, n
    if run:
        out.append(run)
    return out


def socket_of(transport: DatagramTransport) -> tuple[socket.socket | None, bool]:
    """The transport's socket to send on directly, and whether the caller owns it (must
    close it). asyncio's transport keeps its socket; uvloop's (the edge's loop) shows only
    a stand-in without `sendmsg`, so its descriptor is duplicated: same socket, own handle."""
    sock = getattr(transport, "_sock", None)
    if isinstance(sock, socket.socket):
        return sock, False
    extra = transport.get_extra_info("socket")
    if extra is None:
        return None, False
    try:
        sock = socket.socket(fileno=os.dup(extra.fileno()))
    except OSError:
        return None, False
    sock.setblocking(False)  # as the transport's (the flag is shared): a full socket raises
    return sock, True


class DatagramSender:
    """One viewer's datagram transport and a socket to send on directly; `close()` drops
    the duplicated handle (never the transport's own)."""

    def __init__(self, transport: DatagramTransport) -> None:
        self.transport = transport
        self.sock, self._owned = socket_of(transport)

    def send(self, datagrams: list[bytes], addr) -> None:
        send(self.transport, datagrams, addr, self.sock)

    def close(self) -> None:
        if self._owned and self.sock is not None:
            self.sock.close()
        self.sock = None


def send(transport: DatagramTransport, datagrams: list[bytes], addr, sock: socket.socket | None = None) -> None:
    """Send `datagrams` to `addr` in order, segmented where possible, on `sock` (the
    transport's socket, see `socket_of`) while the transport holds nothing unsent."""
    global enabled
    if not enabled or sock is None or transport.get_write_buffer_size():
        for data in datagrams:
            transport.sendto(data, addr)
        return
    pending = runs(datagrams)
    for i, run in enumerate(pending):
        try:
            if len(run) == 1:
                sock.sendto(run[0], addr)
            else:
                sock.sendmsg([b"".join(run)], [(socket.SOL_UDP, UDP_SEGMENT, _SEGMENT_SIZE.pack(len(run[0])))],
                               0, addr)
            continue
        except OSError as exc:
            # A full socket (the transport queues this and the rest, in order), a kernel
            # or device that does not segment UDP (one by one from now on), or another
            # error, which the transport reports to the protocol as it always did.
            if len(run) > 1 and exc.errno in _UNSUPPORTED:
                enabled = False
        for rest in pending[i:]:
            for data in rest:
                transport.sendto(data, addr)
        return

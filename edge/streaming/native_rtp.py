"""The shared WHEP fan-out's per-viewer work in one C call: RTP header, SRTP protect, send.

On the shared path every viewer of a stream gets the same RTP payloads; what differs per
viewer is a 12-byte header, the header extension, the SRTP protect and the send. In
Python that was ~30 us per viewer and frame, three times the send itself, and the edge's
one event loop ran out at about 1.7 ms of CPU per viewer-second (bench/RESULTS.md,
"Streaming"). `rtp_send.c` does the same work in one call with the GIL released.

It is built by `make` (build/rtp_send.so, from edge/streaming/rtp_send.c, with the
system's C compiler) and loaded here with cffi (already installed: pylibsrtp uses it).
libsrtp is not linked twice: the C code calls `srtp_protect` through the pointer
pylibsrtp's own binding exports, on the viewer's own pylibsrtp session, so the SRTP
state (rollover counter, keys) stays the one aiortc's RTCP and retransmissions use.

When the library is missing (no compiler where the edge was set up) the fan-out stays
on the Python writer (`RtpHeaderWriter` + `udp_batch`), which makes the same bytes:
tests/edge/test_native_rtp.py compares the two byte for byte.
"""

from __future__ import annotations

import logging
import socket
import struct
from pathlib import Path

import pylibsrtp

log = logging.getLogger(__name__)

LIBRARY = Path(__file__).resolve().parents[2] / "build" / "rtp_send.so"
SOURCE = Path(__file__).with_name("rtp_send.c")
SRTP_MAX_TRAILER = 16 + 128  # libsrtp's SRTP_MAX_TAG_LEN + SRTP_MAX_MKI_LEN
MAX_EXTENSION = 64  # the C struct's room for the header extension block

_CDEF = """
struct wave_rtp_viewer {
    void *protect;
    void *srtp;
    int fd;
    uint32_t addr_len;
    uint8_t addr[28];
    uint32_t ssrc;
    uint32_t timestamp_origin;
    uint16_t sequence_number;
    uint8_t payload_type;
    uint8_t ext_len;
    int16_t abs_offset;
    uint8_t ext[64];
};
struct wave_rtp_frame {
    const uint8_t *payloads;
    const uint32_t *offsets;
    const uint32_t *lens;
    int n;
    uint32_t stride;
    uint8_t *out;
    uint32_t *out_lens;
    int sent;
    int err;
};
long wave_rtp_write_send(struct wave_rtp_viewer *v, struct wave_rtp_frame *f, uint32_t media_timestamp,
                         uint32_t abs_send_time, int send);
int wave_rtp_segmentation(void);
"""

_loaded: tuple | None = None
_tried = False


def load() -> tuple | None:
    """(ffi, lib, srtp_protect's address) once, or None when the library is not built or
    does not load; the reason is logged once."""
    global _loaded, _tried
    if _tried:
        return _loaded
    _tried = True
    try:
        import cffi

        if not LIBRARY.exists():
            raise OSError(f"{LIBRARY} is not built (make builds it from {SOURCE.name})")
        if LIBRARY.stat().st_mtime < SOURCE.stat().st_mtime:
            raise OSError(f"{LIBRARY} is older than {SOURCE.name}: run make")
        ffi = cffi.FFI()
        ffi.cdef(_CDEF)
        lib = ffi.dlopen(str(LIBRARY))
        protect = int(pylibsrtp.ffi.cast("uintptr_t", pylibsrtp.ffi.addressof(pylibsrtp.lib, "srtp_protect")))
        _loaded = (ffi, lib, protect)
        log.info("WHEP fan-out: native RTP sender loaded (%s)", LIBRARY.name)
    except Exception as exc:  # noqa: BLE001 - whatever stops the load, the Python writer works
        log.warning("WHEP fan-out: native RTP sender unavailable, Python writer in use: %s", exc)
    return _loaded


def sockaddr(addr: tuple) -> bytes | None:
    """The `struct sockaddr_in`/`sockaddr_in6` bytes of a numeric (host, port), or None
    for what this does not encode (a scoped IPv6 address: the Python writer sends those)."""
    host, port = addr[0], addr[1]
    try:
        if ":" not in host:
            return struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + socket.inet_pton(
                socket.AF_INET, host) + bytes(8)
        if "%" in host:
            return None
        return (struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", port, 0)
                + socket.inet_pton(socket.AF_INET6, host) + struct.pack("=I", 0))
    except (OSError, ValueError, struct.error):
        return None


class NativeFrame:
    """One shared frame's payloads where C can read them, and the scratch every viewer's
    datagrams are written into in turn (the event loop sends one viewer's before it
    writes the next's): a `struct wave_rtp_frame`, filled once per frame."""

    __slots__ = ("n", "struct", "out", "out_lens", "stride", "_keep")

    def __init__(self, ffi, payloads: list[bytes]) -> None:
        joined = b"".join(payloads)
        n = self.n = len(payloads)
        offsets, at = [], 0
        for p in payloads:
            offsets.append(at)
            at += len(p)
        self.stride = max(map(len, payloads), default=0) + 12 + MAX_EXTENSION + SRTP_MAX_TRAILER
        data = ffi.from_buffer("uint8_t[]", joined)
        offsets_c = ffi.new("uint32_t[]", offsets or [0])
        lens_c = ffi.new("uint32_t[]", [len(p) for p in payloads] or [0])
        self.out = ffi.new("uint8_t[]", max(n, 1) * self.stride)
        self.out_lens = ffi.new("uint32_t[]", max(n, 1))
        self._keep = (joined, data, offsets_c, lens_c)  # the struct points into these
        f = self.struct = ffi.new("struct wave_rtp_frame *")
        f.payloads, f.offsets, f.lens, f.n, f.stride = data, offsets_c, lens_c, n, self.stride
        f.out, f.out_lens = self.out, self.out_lens


class NativeViewer:
    """One viewer's C-side RTP state, made from its header writer, SRTP session, socket
    and the ICE pair's remote address; the caller makes a new one when any of those
    changes (rtp_fanout's route)."""

    __slots__ = ("ffi", "struct", "writer", "session", "_send")

    def __init__(self, loaded: tuple, writer, session, fd: int, addr: bytes, ext: bytes, abs_offset: int) -> None:
        self.ffi, lib, protect = loaded
        self.writer, self.session = writer, session
        self._send = lib.wave_rtp_write_send
        v = self.struct = self.ffi.new("struct wave_rtp_viewer *")
        v.protect = self.ffi.cast("void *", protect)
        # pylibsrtp keeps its `srtp_t` in `_srtp[0]` (pinned by tests/test_library_contracts.py);
        # `session` is kept referenced here so it outlives every call that uses it.
        v.srtp = self.ffi.cast("void *", int(pylibsrtp.ffi.cast("uintptr_t", session._srtp[0])))
        v.fd = fd
        v.addr_len = len(addr)
        self.ffi.memmove(v.addr, addr, len(addr))
        v.ssrc = writer.ssrc
        v.timestamp_origin = writer.timestamp_origin
        v.payload_type = writer.payload_type
        v.ext_len = len(ext)
        v.abs_offset = abs_offset
        self.ffi.memmove(v.ext, ext, len(ext))

    @classmethod
    def make(cls, writer, session, fd: int, remote_addr: tuple) -> NativeViewer | None:
        loaded = load()
        if loaded is None:
            return None
        layout = writer.extension_layout()
        addr = sockaddr(remote_addr)
        if layout is None or addr is None or len(layout[0]) > MAX_EXTENSION:
            return None
        return cls(loaded, writer, session, fd, addr, *layout)

    def send(self, frame, abs_send_time: int, send: bool) -> tuple[int, int, list[bytes]]:
        """Write, protect and (when `send`) send this viewer's packets of `frame`. Returns
        (first sequence number, wire bytes, the datagrams not sent, in order: all of them
        when not `send`, the rest after a full socket or an error), advancing the writer's
        sequence number as its own `write` would."""
        native = frame.native
        if native is None:
            native = frame.native = NativeFrame(self.ffi, frame.payloads)
        v, writer = self.struct, self.writer
        first = v.sequence_number = writer.sequence_number
        wire = self._send(v, native.struct, frame.timestamp & 0xFFFFFFFF, abs_send_time, send)
        if wire < 0:
            raise RuntimeError(f"SRTP protect failed (libsrtp error {-wire})")
        writer.sequence_number = v.sequence_number
        sent = native.struct.sent
        rest = []
        if sent < native.n:
            out, stride, lens, buf = native.out, native.stride, native.out_lens, self.ffi.buffer
            rest = [buf(out + i * stride, lens[i])[:] for i in range(sent, native.n)]
        return first, wire, rest

    @staticmethod
    def segmentation() -> bool | None:
        loaded = load()
        return None if loaded is None else bool(loaded[1].wave_rtp_segmentation())

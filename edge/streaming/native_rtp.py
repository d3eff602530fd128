"""The shared WHEP fan-out's per-viewer work in one C call: RTP header, SRTP protect, send.

On the shared path every viewer of a stream gets the same RTP payloads; what differs per
viewer is a 12-byte header, the header extension, the SRTP protect and the send. In
Python that was ~30 us per viewer and frame, three times the send itself, and the edge's
one event loop ran out at about 1.7 ms of CPU per viewer-second (bench/RESULTS.md,
"Streaming"). `rtp_send.c` does the same work in one call with the GIL released, and
`NativeBatch` sends one frame to many viewers in one call (rtp_fanout.FanoutGroup). The
struct of a viewer also counts what it sent and keeps its NACK history, so that nothing
per viewer and frame is left to Python.

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
import os
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
    uint64_t packets;
    uint64_t octets;
    uint64_t wire;
    uint64_t frames;
    uint64_t frame_bytes;
    uint64_t ntp;
    uint32_t rtp_timestamp;
    uint32_t hist_next;
    uint32_t hist_serial[128];
    uint32_t hist_abs[128];
    uint16_t hist_first[128];
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
    uint32_t serial;
    uint32_t data_bytes;
};
long wave_rtp_write_send(struct wave_rtp_viewer *v, struct wave_rtp_frame *f, uint32_t media_timestamp,
                         uint64_t ntp, int send);
int wave_rtp_fanout(struct wave_rtp_viewer **viewers, int count, int start, struct wave_rtp_frame *f,
                    uint32_t media_timestamp, long *result);
int wave_rtp_segmentation(void);
"""
HISTORY = 128  # frames of NACK history per viewer: rtp_send.c's ring

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

    def __init__(self, ffi, payloads: list[bytes], serial: int = 0, data_bytes: int = 0) -> None:
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
        f.serial, f.data_bytes = serial & 0xFFFFFFFF, data_bytes

    def rest(self, ffi) -> list[bytes]:
        """The datagrams the last send did not get out, in order (from the scratch)."""
        out, stride, lens, buf = self.out, self.stride, self.out_lens, ffi.buffer
        return [buf(out + i * stride, lens[i])[:] for i in range(self.struct.sent, self.n)]


def native_frame(ffi, frame) -> NativeFrame:
    """`frame`'s payloads where C reads them, made once per shared frame."""
    native = frame.native
    if native is None:
        native = frame.native = NativeFrame(ffi, frame.payloads, frame.serial, len(frame.data))
    return native


class NativeViewer:
    """One viewer's C-side RTP state, made from its header writer, SRTP session, socket
    and the ICE pair's remote address; the caller makes a new one when any of those
    changes (rtp_fanout's route)."""

    __slots__ = ("ffi", "struct", "writer", "session", "_send", "_fd")

    def __init__(self, loaded: tuple, writer, session, fd: int, addr: bytes, ext: bytes, abs_offset: int) -> None:
        self.ffi, lib, protect = loaded
        self.writer, self.session = writer, session
        self._send = lib.wave_rtp_write_send
        v = self.struct = self.ffi.new("struct wave_rtp_viewer *")
        v.protect = self.ffi.cast("void *", protect)
        # pylibsrtp keeps its `srtp_t` in `_srtp[0]` (pinned by tests/test_library_contracts.py);
        # `session` is kept referenced here so it outlives every call that uses it.
        v.srtp = self.ffi.cast("void *", int(pylibsrtp.ffi.cast("uintptr_t", session._srtp[0])))
        # Its own descriptor of the socket (closed by `close`): should ICE close the socket
        # before the viewer's sender stops, the number cannot be reused for another socket
        # while C still sends on it.
        v.fd = self._fd = os.dup(fd)
        v.addr_len = len(addr)
        self.ffi.memmove(v.addr, addr, len(addr))
        # From here the struct numbers the viewer's packets (a NativeBatch sends on it too);
        # the writer is told the next number whenever Python looks (`send`, `take_counts`,
        # `close`), so that a later route's writer, or the Python writer, continues from it.
        v.sequence_number = writer.sequence_number
        v.ssrc = writer.ssrc
        v.timestamp_origin = writer.timestamp_origin
        v.payload_type = writer.payload_type
        v.ext_len = len(ext)
        v.abs_offset = abs_offset
        self.ffi.memmove(v.ext, ext, len(ext))

    def close(self) -> None:
        """Give the socket's descriptor back; the writer continues from the next number."""
        fd = getattr(self, "_fd", -1)  # -1 too when __init__ did not get that far
        if fd >= 0:
            self._fd = -1
            self.writer.sequence_number = self.struct.sequence_number
            os.close(fd)

    def __del__(self) -> None:
        self.close()

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

    def send(self, frame, ntp: int, send: bool) -> tuple[int, int, list[bytes]]:
        """Write, protect and (when `send`) send this viewer's packets of `frame`, with the
        abs-send-time of the NTP time `ntp`. Returns (first sequence number, wire bytes,
        the datagrams not sent, in order: all of them when not `send`, the rest after a full
        socket or an error), advancing the writer's sequence number as its own `write`
        would; counted in the struct (`take_counts`) and its NACK history."""
        native = native_frame(self.ffi, frame)
        v = self.struct
        first = v.sequence_number
        wire = self._send(v, native.struct, frame.timestamp & 0xFFFFFFFF, ntp, send)
        self.writer.sequence_number = v.sequence_number
        if wire < 0:
            raise RuntimeError(f"SRTP protect failed (libsrtp error {-wire})")
        return first, wire, native.rest(self.ffi) if native.struct.sent < native.n else []

    def take_counts(self) -> tuple[int, int, int, int, int, int, int] | None:
        """(packets, payload bytes, datagram bytes, frames, frame bytes, NTP time, RTP
        timestamp of the last frame) sent since the last call, or None if nothing was."""
        v = self.struct
        self.writer.sequence_number = v.sequence_number
        if not v.frames:
            return None
        counts = (v.packets, v.octets, v.wire, v.frames, v.frame_bytes, v.ntp, v.rtp_timestamp)
        v.packets = v.octets = v.wire = v.frames = v.frame_bytes = 0
        return counts

    def history(self):
        """(frame serial, first sequence number, abs-send-time) of the frames sent, newest first."""
        v = self.struct
        end = v.hist_next
        for i in range(end - 1, max(end - HISTORY, 0) - 1, -1):
            slot = i % HISTORY
            yield v.hist_serial[slot], v.hist_first[slot], v.hist_abs[slot]

    def take_history(self, older: NativeViewer) -> None:
        """Continue the NACK history of the viewer's previous route's writer."""
        v, o = self.struct, older.struct
        v.hist_next = o.hist_next
        for name in ("hist_serial", "hist_abs", "hist_first"):
            self.ffi.memmove(getattr(v, name), getattr(o, name), self.ffi.sizeof(getattr(o, name)))

    @staticmethod
    def segmentation() -> bool | None:
        loaded = load()
        return None if loaded is None else bool(loaded[1].wave_rtp_segmentation())


class NativeBatch:
    """Many viewers' structs in one C array, so one call sends a frame to all of them
    (`wave_rtp_fanout`). Rebuilt by its owner when its viewers change."""

    __slots__ = ("ffi", "array", "count", "_fanout", "_result", "_viewers")

    def __init__(self, viewers: list[NativeViewer]) -> None:
        loaded = load()
        assert loaded is not None, "a NativeViewer exists only where the library loaded"
        self.ffi, lib, _ = loaded
        self._viewers = viewers  # the array points into their structs
        self.count = len(viewers)
        self.array = self.ffi.new("struct wave_rtp_viewer *[]", [v.struct for v in viewers] or 1)
        self._fanout = lib.wave_rtp_fanout
        self._result = self.ffi.new("long *")

    def send(self, frame, start: int) -> tuple[int, int, NativeFrame]:
        """Send `frame` to viewers[start:] until one's datagrams do not all leave: (its
        index or `count`, that viewer's call result, the frame's scratch, which holds that
        viewer's datagrams)."""
        native = native_frame(self.ffi, frame)
        stopped = self._fanout(self.array, self.count, start, native.struct, frame.timestamp & 0xFFFFFFFF,
                               self._result)
        return stopped, self._result[0], native

"""One frame's datagrams to one viewer in few syscalls (edge/streaming/udp_batch.py):
what arrives over real loopback sockets is every datagram, whole and in order."""

import asyncio
import errno
import socket

import pytest

from edge.streaming import udp_batch


def test_runs_are_equal_sizes_closed_by_a_shorter_one():
    a, b, c = b"a" * 100, b"b" * 60, b"c" * 120
    assert udp_batch.runs([a, a, a, b, a, c, c]) == [[a, a, a, b], [a], [c, c]]
    assert udp_batch.runs([]) == []
    many = [a] * (udp_batch.MAX_SEGMENTS + 3)
    assert [len(r) for r in udp_batch.runs(many)] == [udp_batch.MAX_SEGMENTS, 3]
    big = [b"x" * 1400] * 60  # 84 kB: over one datagram's limit
    assert all(sum(map(len, r)) <= udp_batch.MAX_BYTES for r in udp_batch.runs(big))


def _deliver(datagrams: list[bytes], wrap=None, run=asyncio.run) -> list[bytes]:
    """Send through an asyncio datagram transport (as the ICE pair's) to a plain socket."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(0.5)

    async def send() -> None:
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        try:
            sender = udp_batch.DatagramSender(transport)
            if wrap is not None:
                sender.sock = wrap(sender.sock)
            sender.send(datagrams, receiver.getsockname())
            sender.close()
            await asyncio.sleep(0.05)
        finally:
            transport.close()

    run(send())
    got = []
    try:
        while len(got) < len(datagrams) + 1:
            got.append(receiver.recv(65536))
    except socket.timeout:
        pass
    receiver.close()
    return got


def _frame() -> list[bytes]:
    """A frame as SRTP leaves it: full-size fragments, a shorter last, then a new frame."""
    return [bytes([i]) * 1210 for i in range(6)] + [b"\xee" * 333] + [b"\x77" * 90, b"\x78" * 90]


class _Counting:
    def __init__(self, sock):
        assert isinstance(sock, socket.socket), "asyncio's datagram transport keeps its socket as _sock"
        self.sock, self.sends = sock, []

    def sendmsg(self, buffers, ancdata, flags, addr):
        self.sends.append(("sendmsg", len(buffers[0])))
        return self.sock.sendmsg(buffers, ancdata, flags, addr)

    def sendto(self, data, addr):
        self.sends.append(("sendto", len(data)))
        return self.sock.sendto(data, addr)

    def __getattr__(self, name):
        return getattr(self.sock, name)


def test_every_datagram_arrives_whole_and_in_order_in_one_send_per_run():
    datagrams = _frame() + [b"\x55" * 50, b"\x56" * 60]
    assert udp_batch.enabled, "this kernel should segment UDP (Linux 4.18+)"
    spy = []
    assert _deliver(datagrams, wrap=lambda s: spy.append(_Counting(s)) or spy[-1]) == datagrams
    assert spy[0].sends == [("sendmsg", 6 * 1210 + 333), ("sendmsg", 230), ("sendto", 60)]
    assert udp_batch.enabled


class _NoSegmentation:
    """A socket whose kernel refuses UDP_SEGMENT (as an old kernel or some devices do)."""

    def __init__(self, sock):
        self.sock, self.segmented = sock, 0

    def sendmsg(self, *args):
        self.segmented += 1
        raise OSError(errno.EIO, "segmentation not supported")

    def __getattr__(self, name):
        return getattr(self.sock, name)


def test_a_kernel_without_segmentation_falls_back_to_one_by_one(monkeypatch):
    monkeypatch.setattr(udp_batch, "enabled", True)
    wrapped = []
    datagrams = _frame()
    got = _deliver(datagrams, wrap=lambda s: wrapped.append(_NoSegmentation(s)) or wrapped[-1])
    assert got == datagrams, "the refused run and the rest must still go, in order"
    assert wrapped[0].segmented == 1 and udp_batch.enabled is False
    assert _deliver(datagrams, wrap=lambda s: wrapped.append(_NoSegmentation(s)) or wrapped[-1]) == datagrams
    assert wrapped[1].segmented == 0, "once refused, it is not tried again"


class _Full:
    """A socket that is full after its first send: the transport must queue the rest."""

    def __init__(self, sock):
        self.sock, self.calls = sock, 0

    def _once(self, fn, *args):
        self.calls += 1
        if self.calls > 1:
            raise BlockingIOError(errno.EAGAIN, "full")
        return fn(*args)

    def sendmsg(self, *args):
        return self._once(self.sock.sendmsg, *args)

    def __getattr__(self, name):
        return getattr(self.sock, name)


def test_a_full_socket_hands_the_rest_to_the_transport_in_order(monkeypatch):
    monkeypatch.setattr(udp_batch, "enabled", True)
    datagrams = _frame()
    full = []
    assert _deliver(datagrams, wrap=lambda s: full.append(_Full(s)) or full[-1]) == datagrams
    assert full[0].calls == 2 and udp_batch.enabled


def test_on_uvloop_a_duplicate_of_the_socket_is_sent_on_and_closed_alone():
    """The edge runs uvloop, whose transport shows no socket to `sendmsg` on: the sender
    sends on a duplicate of its descriptor, and closing that leaves the transport working."""
    import uvloop

    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(0.5)
    datagrams = _frame()

    async def send() -> tuple[bool, bool]:
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        sender = udp_batch.DatagramSender(transport)
        owned = isinstance(sender.sock, socket.socket) and sender.sock.fileno() != transport.get_extra_info("socket").fileno()
        sender.send(datagrams, receiver.getsockname())
        sender.close()
        transport.sendto(b"after", receiver.getsockname())  # the transport's own socket is open
        await asyncio.sleep(0.05)
        transport.close()
        return owned, sender.sock is None

    assert uvloop.run(send()) == (True, True)
    got = [receiver.recv(65536) for _ in range(len(datagrams) + 1)]
    receiver.close()
    assert got == datagrams + [b"after"]

"""Nothing accepted is lost or doubled: outages, the spool cap, crashes and replays."""

import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time

import msgspec
import pytest

from analytics import events
from analytics.spool import Spool, _HEADER
from analytics.wire import CollectBatch
from analytics.write_buffer import WriteBuffer
from core.metrics import Registry
from tests.conftest import (
    ROOT,
    collect,
    consent,
    count_events,
    event,
    free_port,
    query_path,
    stored_row,
    wait_for,
)


def test_outage_answers_202_spools_and_drains_exactly_once(server, store, tenant):
    assert consent(server.http, tenant.tenant_id, "viewer-o").status_code == 201
    store.faults.inserts_fail = True
    try:
        for batch in range(20):
            evs = [event(video_id=f"b{batch}", position_ms=i) for i in range(25)]
            r = collect(server.http, tenant.tenant_id, "viewer-o", evs)
            assert r.status_code == 202
        time.sleep(0.3)  # several failed flush attempts
        assert count_events(store, tenant.tenant_id) == 0
        assert server.edge.buffer.pending_rows == 500
        assert server.edge.buffer.spool.bytes_on_disk > 0
        metrics = server.http.get("/metrics").text
        assert "wave_write_buffer_rows 500" in metrics
        assert "wave_insert_errors_total" in metrics and "wave_insert_errors_total 0" not in metrics
    finally:
        store.faults.inserts_fail = False
    wait_for(lambda: count_events(store, tenant.tenant_id) == 500, what="the spool to drain")
    wait_for(lambda: server.edge.buffer.spool.bytes_on_disk == 0, what="spool segments to be removed")
    unique = store.command(
        "SELECT uniqExact(video_id, position_ms) FROM viewer_events WHERE tenant_id = {t:String}",
        parameters={"t": tenant.tenant_id},
    )
    assert unique == 500


def test_full_spool_answers_503_with_retry_after_and_stores_nothing_more(server_factory, store, tenant):
    srv = server_factory(spool_max_bytes=20_000)
    assert consent(srv.http, tenant.tenant_id, "viewer-cap").status_code == 201
    store.faults.inserts_fail = True
    accepted = 0
    try:
        for batch in range(50):
            r = collect(srv.http, tenant.tenant_id, "viewer-cap", [event(video_id=f"c{batch}")] * 10)
            if r.status_code == 503:
                assert r.headers["retry-after"] == "5"
                assert r.json()["error"] == "unavailable"
                break
            assert r.status_code == 202
            accepted += 10
        else:
            pytest.fail("the spool never filled")
    finally:
        store.faults.inserts_fail = False
    wait_for(lambda: count_events(store, tenant.tenant_id) == accepted, what="the accepted rows")
    # once drained, the spool takes events again
    assert collect(srv.http, tenant.tenant_id, "viewer-cap", [event()]).status_code == 202


def test_spool_recovery_cuts_a_torn_tail(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20)
    import asyncio

    async def write():
        for i in range(3):
            spool.append(b"record-%d" % i)
        await spool.sync()

    asyncio.run(write())
    spool.close()
    (segment,) = tmp_path.glob("*.spool")
    with open(segment, "ab") as fh:  # a crash in the middle of a fourth append
        fh.write(_HEADER.pack(100, 0) + b"partial")
    again = Spool(tmp_path, max_bytes=1 << 20)
    assert [r.payload for r in again.recover()] == [b"record-0", b"record-1", b"record-2"]
    assert segment.stat().st_size == 3 * (_HEADER.size + 8)


def test_the_event_loop_only_queues_and_a_round_writes_each_segment_once(tmp_path, monkeypatch):
    """The file work of an append (checksum, write) happens in the group commit's thread,
    one write per segment per round: a write into a page under writeback waits for the
    I/O, which on the event loop stalled every request."""
    from analytics import spool as spool_module

    writes: list[tuple[str, int]] = []
    real_write = os.write

    def recording_write(fd, data):
        writes.append((threading.current_thread().name, len(data)))
        return real_write(fd, data)

    monkeypatch.setattr(spool_module.os, "write", recording_write)
    spool = Spool(tmp_path, max_bytes=1 << 20)

    async def accept():
        for i in range(3):
            spool.append(b"record-%d" % i)
        (segment,) = tmp_path.glob("*.spool")
        assert segment.stat().st_size == 0, "append wrote on the event loop"
        await spool.sync()
        return segment

    segment = asyncio.run(accept())
    assert segment.stat().st_size == 3 * (_HEADER.size + 8)
    assert len(writes) == 1 and writes[0][1] == 3 * (_HEADER.size + 8), writes
    assert writes[0][0] != threading.main_thread().name
    spool.close()
    assert [r.payload for r in Spool(tmp_path, max_bytes=1 << 20).recover()] == [b"record-0", b"record-1", b"record-2"]


def test_a_failed_round_is_cut_back_whole_and_the_next_starts_a_segment(tmp_path, monkeypatch):
    """Every caller of a round whose write failed is refused, none of its bytes stay on
    file (a torn record would hide later ones from recovery), and later records go on."""
    from analytics import spool as spool_module
    from analytics.spool import SpoolFull

    real_write = os.write
    fail = {"left": 0}

    def failing_write(fd, data):
        if fail["left"]:
            fail["left"] -= 1
            real_write(fd, data[:5])  # a few bytes land, then the disk is full
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(spool_module.os, "write", failing_write)
    spool = Spool(tmp_path, max_bytes=1 << 20)

    async def run():
        first = spool.append(b"kept")
        await spool.sync()
        fail["left"] = 1
        refused = [spool.append(b"refused-%d" % i) for i in range(2)]
        with pytest.raises(SpoolFull):
            await spool.sync()
        for number in refused:
            spool.release(number)
        later = spool.append(b"later")
        await spool.sync()
        return first, refused, later

    first, refused, later = asyncio.run(run())
    assert refused == [first, first] and later > first, "a failed segment must take no more records"
    (kept_file, later_file) = sorted(tmp_path.glob("*.spool"))
    assert kept_file.stat().st_size == _HEADER.size + 4, "the failed round's bytes were left on file"
    assert spool.bytes_on_disk == 2 * _HEADER.size + 4 + 5
    spool.close()
    assert [r.payload for r in Spool(tmp_path, max_bytes=1 << 20).recover()] == [b"kept", b"later"]


def test_replay_skips_rows_already_stored(tmp_path, store, tenant):
    """A crash after the insert but before the spool release must not double rows."""
    import asyncio

    def rows(n):
        return [stored_row(tenant.tenant_id, video_id="replay") for _ in range(n)]

    first, second = events.encode_rows(rows(7)), events.encode_rows(rows(5))
    spool = Spool(tmp_path, max_bytes=1 << 20)

    async def spool_both():
        spool.append(first)
        spool.append(second)
        await spool.sync()

    asyncio.run(spool_both())
    spool.close()
    events.insert(store, first)  # the dead process had inserted this block

    async def restart():
        buffer = WriteBuffer(store, Spool(tmp_path, max_bytes=1 << 20), Registry(), flush_ms=20)
        await buffer.start()
        await buffer.stop()
        return buffer

    buffer = asyncio.run(restart())
    assert count_events(store, tenant.tenant_id) == 12
    assert buffer.spool.bytes_on_disk == 0 and not list(tmp_path.glob("*.spool"))


def _start_edge(data_dir, port):
    env = dict(os.environ, WAVE_DATA_DIR=str(data_dir), WAVE_TRUSTED_PROXIES="127.0.0.1", WAVE_FLUSH_MS="100")
    return subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "serve", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def _wait_healthy(http, proc):
    def ok():
        assert proc.poll() is None, "edge exited"
        try:
            return http.get("/healthz").status_code == 200
        except Exception:
            return False

    wait_for(ok, timeout=60, what="the edge to serve")


def test_sigkill_mid_stream_loses_and_doubles_nothing(tmp_path):
    import httpx

    data_dir = tmp_path / "var"
    created = subprocess.run(
        [sys.executable, "-m", "edge.cli", "tenant", "create", "crash", "--ip-mode", "full"],
        cwd=ROOT, env=dict(os.environ, WAVE_DATA_DIR=str(data_dir)), capture_output=True, text=True, check=True,
    )
    tenant_id = json.loads(created.stdout)["tenant_id"]
    port = free_port()
    proc = _start_edge(data_dir, port)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    accepted: list[str] = []
    stop = threading.Event()
    try:
        _wait_healthy(http, proc)
        assert consent(http, tenant_id, "viewer-k").status_code == 201

        def send():
            batch = 0
            while not stop.is_set():
                batch += 1
                evs = [event(video_id=f"k{batch}", position_ms=i) for i in range(50)]
                try:
                    r = collect(http, tenant_id, "viewer-k", evs)
                except httpx.HTTPError:
                    return  # the server died under us: this batch was never acknowledged
                if r.status_code == 202:
                    accepted.append(f"k{batch}")

        sender = threading.Thread(target=send)
        sender.start()
        wait_for(lambda: len(accepted) >= 40, timeout=60, what="traffic")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        stop.set()
        sender.join()
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
    assert list((data_dir / "spool").glob("*.spool")), "the crash left nothing to replay"

    proc = _start_edge(data_dir, port)
    try:
        _wait_healthy(http, proc)
        metrics = lambda: http.get("/metrics").text  # noqa: E731
        wait_for(lambda: "wave_write_buffer_rows 0" in metrics(), what="the replay to drain")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        http.close()

    rows = query_path(
        data_dir / "clickhouse",
        f"SELECT video_id, count(), uniqExact(position_ms) FROM viewer_events"
        f" WHERE tenant_id = '{tenant_id}' GROUP BY video_id",
    )
    stored = {video: (n, uniq) for video, n, uniq in rows}
    for video in accepted:
        assert stored.get(video) == (50, 50), f"batch {video} lost or doubled: {stored.get(video)}"
    # a batch in flight at the kill may have landed, but never twice
    assert all(n == uniq == 50 for n, uniq in stored.values())


def test_encoding_a_batch_keeps_nothing_alive():
    """The soak found the Python heap growing with requests: msgspec's encode_lines kept a
    reference to the generator it was given, one per beacon batch."""
    batch = msgspec.json.decode(json.dumps({"tenant_id": "t", "viewer_id": "v", "events": [
        {"type": "playing", "ts": 1, "view_id": "w", "video_id": "x"}] * 5}), type=CollectBatch)
    ids = events.EventIds()
    context = ("t",) * len(events.CONTEXT_COLUMNS)

    def live_objects() -> int:
        gc.collect()
        return len(gc.get_objects())

    for _ in range(100):  # warm caches
        events.encode_batch(context, batch.events, ids)
        events.encode_rows(iter([("a",)]))
    before = live_objects()
    for _ in range(2000):
        events.encode_batch(context, batch.events, ids)
        events.encode_rows(iter([("a",)]))
    assert live_objects() - before < 50

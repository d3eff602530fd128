"""The benchmarks run and say what they measured under: smoke runs, no timed assertions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ingest_cold_start_runs_and_names_its_limits():
    """`--warmup 0` (a cold start) once crashed closing a connection never opened."""
    out = subprocess.run([sys.executable, "bench/ingest.py", "--warmup", "0", "--batches", "200",
                          "--viewers", "50", "--concurrency", "4"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["warmup_batches"] == 0 and result["all_stored_once"] and result["errors"] == {}
    assert result["limits"]["WAVE_LIMIT_TENANT_EVENTS"] == "off"
    assert "spread over 50 addresses" in result["limits"]["WAVE_LIMIT_IP"]


def test_limits_report_every_limit_as_the_edge_sees_it():
    sys.path.insert(0, str(ROOT))
    from bench import limits

    env = limits.turned_off({"WAVE_LIMIT_IP": "5/10"}, "WAVE_LIMIT_WHEP_IP", "WAVE_LIMIT_WHEP_TENANT")
    report = limits.report(env, {"WAVE_LIMIT_IP": "one address per viewer", "WAVE_LIMIT_WHEP_IP": "ignored"})
    assert set(report) == set(limits.NAMES)
    assert report["WAVE_LIMIT_IP"] == "5/10; one address per viewer"
    assert report["WAVE_LIMIT_WHEP_IP"] == report["WAVE_LIMIT_WHEP_TENANT"] == "off"
    assert report["WAVE_LIMIT_ADMIN_IP"] == "20/400"  # the edge's default


def test_edge_capacity_step_with_viewers_that_cannot_connect_is_an_error_not_0_fps():
    """bench/edge.py once counted refused WHEP viewers as viewers at 0 fps."""
    import socket

    import pytest

    sys.path.insert(0, str(ROOT))
    from bench.edge import StepFailed, viewer_capacity

    with socket.socket() as s:  # a loopback port nothing listens on: every viewer fails
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StepFailed) as failed:
        viewer_capacity(f"http://127.0.0.1:{port}", "st_none", [2], 0.1)
    assert (failed.value.step, failed.value.failed) == (2, 2)
    assert "2 of 2 failed to connect" in str(failed.value)
    assert failed.value.measured == {"held": 0, "steps": {}}  # printed beside the error, not as a result
    # split over load processes (`--load-processes`): their failures add up, still an error
    with pytest.raises(StepFailed) as failed:
        viewer_capacity(f"http://127.0.0.1:{port}", "st_none", [3], 0.1, processes=2)
    assert (failed.value.step, failed.value.failed) == (3, 3)


def test_edge_capacity_step_the_edge_turns_away_as_busy_is_not_held_and_not_an_error(monkeypatch):
    """An edge that answers 503 edge_busy with Retry-After (edge/loop_lag.py) is full: the
    load waits as a WHEP client should, then gives up; the step is not held."""
    import http.server
    import threading

    sys.path.insert(0, str(ROOT))
    from bench.edge import viewer_capacity

    posts = []

    class Busy(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the stdlib's name
            self.rfile.read(int(self.headers["content-length"]))
            posts.append(self.path)
            body = b'{"error":"edge_busy","detail":{"path":"$","message":"full"}}'
            self.send_response(503)
            self.send_header("Retry-After", "1")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("WHEP_LOAD_BUSY_GIVE_UP_S", "1.5")
    try:
        result = viewer_capacity(f"http://127.0.0.1:{server.server_port}", "st_full", [3], 0.1)
    finally:
        server.shutdown()
    assert result["whep_viewers_at_30fps"] == 0
    step = result["whep_viewer_steps"][3]
    assert step["turned_away_busy"] == 3 and step["first_try"]["turned_away_busy"] == 3
    assert step["refused_busy"] >= 2  # waited out at least once before giving up
    assert len(posts) >= 4 and set(posts) == {"/whep/st_full"}  # the first viewer, retried, on both tries


def test_vod_ladder_bench_runs_and_measures_against_its_baseline():
    out = subprocess.run([sys.executable, "bench/vod_ladder.py", "--seconds", "1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["baseline"]["renditions"] == 1 and result["baseline"]["how"] == "transcode"
    assert result["ladder_transcode"]["renditions"] == result["ladder_remux_top"]["renditions"] == 4
    # a 1 s source is mostly its first keyframe: maybe too dense to be copied (it says which it did)
    assert result["ladder_remux_top"]["how"] in ("remux", "transcode") and result["cpu_model"]
    assert result["ladder_transcode_vs_baseline"] > 0


def test_ingest_trace_reports_what_the_event_loop_waited_on(tmp_path):
    """`--trace` (issue #20, the collector's tail): the edge runs under the stall sampler."""
    trace = tmp_path / "trace.json"
    out = subprocess.run([sys.executable, "bench/ingest.py", "--warmup", "0", "--batches", "200",
                          "--viewers", "50", "--concurrency", "4", "--trace", str(trace)],
                         cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])["all_stored_once"]
    found = json.loads(trace.read_text())
    assert found["fsync_rounds"] > 0  # every accepted batch went through a spool fsync round
    assert {"gc_passes_over_2ms", "stalls_over_50ms", "stall_ms_by_place", "busy_samples"} <= set(found)


def test_scale_bench_grows_the_store_and_purges_at_both_sizes():
    """`bench/scale.py` (issue #20, ten times the data) at a toy size: one JSON object with
    both sizes' figures, a quarter of the larger set in the 30-day range, real purges."""
    out = subprocess.run([sys.executable, "bench/scale.py", "--events", "40000", "--factor", "4", "--runs", "1",
                          "--more", "0"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    first, second = result["first"], result["second"]
    assert 3.5 < second["beacons"] / first["beacons"] < 4.5
    assert 0.2 < second["beacons_last_30_days"] / second["beacons"] < 0.3
    assert result["same_answers_as_raw_sql"] is True
    assert result["dashboard_p50_ratio_worst"] > 0 and len(result["dashboard_worst_p50_ms"]) == 2
    for size in (first, second):
        assert size["privacy"]["rows_deleted"]["viewer_events"] == size["privacy"]["subject_beacons"] > 0
        assert size["storage"]["bytes_per_beacon_all_tables"] > 0
    assert first["storage"]["plain_mergetree_bytes_per_beacon"] > 0


def test_spool_fsync_bench_times_both_commits_idle_and_loaded_and_leaves_no_file(tmp_path):
    out = subprocess.run([sys.executable, "bench/spool_fsync.py", "--seconds", "0.3", "--dir", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for phase in ("idle", "loaded"):
        for mode in ("append_fsync", "zeroed_fdatasync"):
            assert result[phase][mode]["n"] > 0 and result[phase][mode]["max_ms"] >= result[phase][mode]["p50_ms"]
    assert result["load_views_inserted"] > 0 and result["cpu"]["model"]
    assert list(tmp_path.iterdir()) == []  # the timed files and the loaded store are gone


def test_whep_load_splits_a_run_read_with_gro_into_its_datagrams():
    """bench/whep_load.py reads its viewers' sockets with UDP GRO: a run the edge sent in
    one segmented send arrives in one read and must be counted as its datagrams, in order
    (in a process of its own: whep_load patches aiortc's receive path when imported)."""
    script = r'''
import json, socket, struct, sys
sys.path.insert(0, "bench")
import whep_load
got = []
whep_load._receive = lambda protocol, data, addr: got.append(data)
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.bind(("127.0.0.1", 0))
rx.setsockopt(socket.SOL_UDP, whep_load.UDP_GRO, 1)
rx.setblocking(False)
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
run = [bytes([i]) * 100 for i in range(3)] + [b"z" * 50]
tx.sendmsg([b"".join(run)], [(socket.SOL_UDP, 103, struct.pack("=H", 100))], 0, rx.getsockname())
tx.sendto(b"alone", rx.getsockname())
import time; time.sleep(0.2)
whep_load._read_runs(None, rx)
print(json.dumps({"ok": got == run + [b"alone"], "lens": [len(g) for g in got]}))
'''
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["ok"], result["lens"]


def test_whep_load_counts_in_c_only_whole_authentic_frames():
    """bench/whep_load.py's viewers read, decrypt and count in C (bench/rtp_count.c, built by
    `make`): a frame counts only when every packet since the last frame's end arrived and
    decrypted; a forged packet is rejected, not counted; a run read with GRO is split; the
    edge's SRTCP is left unread; STUN goes back to aioice's handler with its sender."""
    script = r'''
import asyncio, json, os, socket, struct, sys
sys.path.insert(0, "bench")
import pylibsrtp
import whep_load
assert whep_load.COUNTER.exists(), "make builds build/rtp_count.so"
key = os.urandom(30)
def session(direction):
    return pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=direction))
tx_srtp, rx_srtp = session(pylibsrtp.Policy.SSRC_ANY_OUTBOUND), session(pylibsrtp.Policy.SSRC_ANY_INBOUND)
def rtp(seq, marker, size=300):
    return tx_srtp.protect(struct.pack("!BBHLL", 0x80, 96 | (0x80 if marker else 0), seq, 9000, 0x1234) + bytes(size))
handed = []
class Protocol:
    transport = None
whep_load._datagram_received = lambda protocol, data, addr: handed.append((data, addr))
async def main():
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind(("127.0.0.1", 0))
    protocol = Protocol()
    protocol.transport = type("T", (), {"_sock": rx})()
    loop = asyncio.get_running_loop()
    loop.add_reader(rx.fileno(), lambda: None)
    whep_load._read_with_gro(protocol, rx_srtp, 7)
    dest = rx.getsockname()
    run = [rtp(1, False), rtp(2, False), rtp(3, True)]  # a whole frame in one segmented send
    tx.sendmsg([b"".join(run)], [(socket.SOL_UDP, 103, struct.pack("=H", len(run[0])))], 0, dest)
    tx.sendto(rtp(5, True), dest)  # 4 never came: not a whole frame
    tx.sendto(rtp(6, False), dest)
    forged = bytearray(rtp(7, True)); forged[20] ^= 1
    tx.sendto(bytes(forged), dest)  # fails authentication: frame 6-7 is not whole
    tx.sendto(rtp(8, False), dest)
    tx.sendto(rtp(9, True), dest)  # 7, the end of the frame before, is missing: not counted
    tx.sendto(rtp(10, False), dest)
    tx.sendto(rtp(11, True), dest)  # whole again
    tx.sendto(bytes([0x80, 200]) + os.urandom(40), dest)  # SRTCP: counted, not read
    stun = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + os.urandom(12)
    tx.sendto(stun, dest)
    await asyncio.sleep(0.3)
    viewer = whep_load._native_counts[7][0]
    print(json.dumps({"frames": whep_load.frame_counts()[7], "packets": viewer.packets,
                      "rejected": viewer.rejected, "rtcp": viewer.rtcp, "stun": handed == [(stun, tx.getsockname())],
                      "mode": whep_load.receive_mode["mode"]}))
asyncio.run(main())
'''
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"frames": 2, "packets": 9, "rejected": 1, "rtcp": 1, "stun": True, "mode": "udp_gro, counted in C"}, result

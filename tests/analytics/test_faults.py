"""Faults the edge must survive: a full disk under the spool, a crash after a drained spool,
and a backup killed half-way.

The disk is filled for real but without root: the edge runs in a subprocess and its file
size limit is lowered from outside (`prlimit`), so its writes fail with EFBIG or are cut
short, exactly where a full disk would fail them; Python ignores SIGXFSZ, so the process
lives on. Raising the limit again is "space is back". The embedded store sees the same
limit, so these tests keep ClickHouse writes out of the fault window (chDB does not
reserve space against a file size limit as it does against a full disk) and count rows
only afterwards, from another process.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from analytics.spool import Spool
from tests.analytics.test_write_path import _wait_healthy
from tests.conftest import ROOT, collect, consent, event, free_port, insert_beacons_at, query_path, wait_for
from tests.edge.test_cli_and_http import _cli

BATCH = 20  # events per batch; each batch has its own video_id so it can be counted alone


# -- helpers ------------------------------------------------------------------------------
def _tenant(data_dir: Path) -> str:
    made = _cli(data_dir, "tenant", "create", "faults", "--ip-mode", "full")
    assert made.returncode == 0, made.stderr
    return json.loads(made.stdout)["tenant_id"]


def _start_edge(data_dir: Path, port: int, flush_ms: int = 100) -> subprocess.Popen:
    """The edge in its own process, so only it gets the fault (no rollup: it would write
    to the store while the disk is full)."""
    env = dict(os.environ, WAVE_DATA_DIR=str(data_dir), WAVE_TRUSTED_PROXIES="127.0.0.1",
               WAVE_FLUSH_MS=str(flush_ms), WAVE_ROLLUP_S="0")
    env.pop("WAVE_CLICKHOUSE_URL", None)
    return subprocess.Popen([sys.executable, "-m", "edge.cli", "serve", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _disk_full(pid: int, room: int = 0) -> None:
    """From now on no file of the process may grow past `room` bytes (unprivileged: the
    hard limit stays unlimited, so the soft one can be raised again)."""
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (room, resource.RLIM_INFINITY))


def _space_back(pid: int) -> None:
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def _send(http: httpx.Client, tenant_id: str, name: str) -> httpx.Response:
    return collect(http, tenant_id, "viewer-f", [event(video_id=name, position_ms=i) for i in range(BATCH)])


def _assert_refused(r: httpx.Response) -> None:
    """The one answer a batch that was not made durable may get: retry later, in JSON."""
    assert r.status_code == 503, r.text
    assert int(r.headers["retry-after"]) > 0
    body = r.json()
    assert body["error"] == "unavailable"
    assert set(body["detail"]) == {"path", "message"} and body["detail"]["message"]


def _drained(http: httpx.Client) -> bool:
    return "wave_write_buffer_rows 0" in http.get("/metrics").text


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
    proc.wait(timeout=60)


def _stored(data_dir: Path, tenant_id: str) -> dict[str, tuple[int, int]]:
    """video_id -> (rows, distinct positions), read from the edge's store by another process."""
    rows = query_path(data_dir / "clickhouse",
                      f"SELECT video_id, count(), uniqExact(position_ms) FROM viewer_events"
                      f" WHERE tenant_id = '{tenant_id}' GROUP BY video_id")
    return {video: (n, uniq) for video, n, uniq in rows}


def _segments(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "spool").glob("*.spool"))


def _edge_ready(tmp_path: Path, flush_ms: int = 100) -> tuple[Path, str, int, subprocess.Popen, httpx.Client]:
    """A tenant, the edge serving it in its own process, and one viewer's consent; the
    caller stops the edge (`_stop`) and closes the client."""
    data_dir = tmp_path / "var"
    tenant_id = _tenant(data_dir)
    port = free_port()
    proc = _start_edge(data_dir, port, flush_ms)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    try:
        _wait_healthy(http, proc)
        assert consent(http, tenant_id, "viewer-f").status_code == 201
    except BaseException:
        _stop(proc)
        http.close()
        raise
    return data_dir, tenant_id, port, proc, http


# -- 1. the disk under the spool fills up ----------------------------------------------
def test_full_disk_answers_503_keeps_serving_and_loses_nothing_accepted(tmp_path):
    data_dir, tenant_id, _, proc, http = _edge_ready(tmp_path)
    accepted, refused = [], []
    try:
        for i in range(5):
            assert _send(http, tenant_id, f"before{i}").status_code == 202
            accepted.append(f"before{i}")
        wait_for(lambda: _drained(http), what="the first batches to be stored")

        _disk_full(proc.pid)
        for i in range(5):
            _assert_refused(_send(http, tenant_id, f"full{i}"))
            refused.append(f"full{i}")
        assert http.get("/healthz").status_code == 200
        assert http.get("/metrics").status_code == 200
        assert proc.poll() is None

        _space_back(proc.pid)
        for i in range(5):
            assert _send(http, tenant_id, f"after{i}").status_code == 202
            accepted.append(f"after{i}")
        wait_for(lambda: _drained(http), what="the batches after the fault to be stored")
    finally:
        _stop(proc)
        http.close()

    stored = _stored(data_dir, tenant_id)
    assert {v: stored.get(v) for v in accepted} == {v: (BATCH, BATCH) for v in accepted}, "202 means stored once"
    assert not set(refused) & set(stored), "a refused batch must not be stored: the client sends it again"
    assert _segments(data_dir) == [], "the refused writes left spool files behind"


def test_a_record_torn_by_the_full_disk_hides_none_accepted_after_it(tmp_path):
    """A write cut short mid-record is cut back at once, in the running process, so what is
    accepted afterwards is not stranded behind a torn record when the spool is replayed."""
    data_dir, tenant_id, port, proc, http = _edge_ready(tmp_path, flush_ms=600_000)  # all stays in the spool
    accepted = []
    try:
        for i in range(3):
            assert _send(http, tenant_id, f"early{i}").status_code == 202
            accepted.append(f"early{i}")
        (segment,) = _segments(data_dir)
        size = segment.stat().st_size

        _disk_full(proc.pid, room=size + 10)  # the next record gets 10 bytes in, then fails
        _assert_refused(_send(http, tenant_id, "torn"))
        assert segment.stat().st_size == size, "the torn bytes were left in the segment"
        _space_back(proc.pid)

        for i in range(3):
            assert _send(http, tenant_id, f"late{i}").status_code == 202
            accepted.append(f"late{i}")
        _stop(proc, signal.SIGKILL)  # nothing was inserted yet: all of it is in the spool

        proc = _start_edge(data_dir, port)
        _wait_healthy(http, proc)
        wait_for(lambda: _drained(http), what="the replay")
    finally:
        _stop(proc)
        http.close()

    stored = _stored(data_dir, tenant_id)
    assert stored == {v: (BATCH, BATCH) for v in accepted}


# -- a crash right after the spool drained ------------------------------------------------
def test_records_spooled_after_a_full_drain_survive_a_crash(tmp_path):
    """A drained segment's file is unlinked at the next fsync round; a new segment must not
    take its name, or that unlink deletes records already acknowledged."""

    async def accept_drain_accept(spool: Spool) -> None:
        first = spool.append(b"first")
        await spool.sync()
        spool.release(first)  # ClickHouse confirmed it: the segment is drained
        spool.append(b"acknowledged")
        await spool.sync()  # the point where the collector answers 202

    asyncio.run(accept_drain_accept(Spool(tmp_path, max_bytes=1 << 20)))
    # the process dies here, without close(); the next one replays what it finds
    assert [r.payload for r in Spool(tmp_path, max_bytes=1 << 20).recover()] == [b"acknowledged"]


# -- 2. SIGKILL during a backup ----------------------------------------------------------
def _kill_backup_midway(data_dir: Path) -> str:
    """Run `backup create` and SIGKILL it as soon as ClickHouse starts writing the backup."""
    env = dict(os.environ, WAVE_DATA_DIR=str(data_dir))
    env.pop("WAVE_CLICKHOUSE_URL", None)
    known = {p.name for p in (data_dir / "backups").iterdir()}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "wave-edge"), "backup", "create"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            started = [p for p in (data_dir / "backups").iterdir() if p.name not in known and (p / "db").exists()]
            if started:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                assert not (started[0] / "manifest.json").exists(), "the backup finished before the kill"
                return started[0].name
            time.sleep(0.0005)
        raise AssertionError("the backup never started, or finished unseen")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _json(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_backup_killed_midway_is_never_restored_and_is_pruned(tmp_path):
    data_dir = tmp_path / "var"
    tenant_id = _tenant(data_dir)
    rows = 2_000_000  # enough that the backup takes tens of milliseconds to write
    insert_beacons_at(data_dir / "clickhouse", tenant_id, "viewer-b", rows)
    good = _json(_cli(data_dir, "backup", "create"))["backup_id"]

    torn = _kill_backup_midway(data_dir)

    listed = _json(_cli(data_dir, "backup", "list"))
    assert [b["backup_id"] for b in listed["backups"]] == [good], "a torn backup is listed as usable"
    assert listed["incomplete"] == [torn]
    refused = _cli(data_dir, "backup", "restore", torn)
    assert refused.returncode == 2
    assert json.loads(refused.stderr)["error"] == "incomplete" and "incomplete" in json.loads(refused.stderr)["detail"]
    assert _json(_cli(data_dir, "backup", "prune"))["pruned"] == [torn], "only the torn backup goes"
    assert not (data_dir / "backups" / torn).exists()

    fresh = _json(_cli(data_dir, "backup", "create"))["backup_id"]
    listed = _json(_cli(data_dir, "backup", "list"))
    assert [b["backup_id"] for b in listed["backups"]] == [good, fresh] and listed["incomplete"] == []
    count = f"SELECT count() FROM viewer_events WHERE tenant_id = '{tenant_id}'"
    assert query_path(data_dir / "clickhouse", count) == [[rows]], "the kill damaged the store"
    restored = _cli(data_dir, "backup", "restore", fresh)
    assert restored.returncode == 0, restored.stderr
    assert query_path(data_dir / "clickhouse", count) == [[rows]], "the new backup does not hold the data"

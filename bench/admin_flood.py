"""Admin flood benchmark: beacon and consent latency, unloaded vs during a keyless flood.

    .venv/bin/python bench/admin_flood.py [--flood 2000] [--seconds 4] [--flood-concurrency 64]

Issue #14's attack: 2,000 keyless requests to an admin route in under 4 s made consent,
collect and dashboard calls take 15 s (each 401 wrote an audit row on the shared thread
pool). This measures, in one run against one `wave-edge serve` process (embedded chDB):

1. baseline: `--seconds` of steady beacons (`POST /v1/collect`, 50 events) and consents
   from two clients, each request timed; no other load;
2. the same steady load while `--flood` keyless `GET /v1/streams` arrive as fast as
   `--flood-concurrency` connections can send them, all from one address (the attack);
3. the same again with every flood request from its own address (behind the trusted
   proxy), so the per-address admin limit cannot help and only the cost of a refusal counts.

Prints one JSON object: p50/p99 per phase for collect and consent, the ratios of flood
p99 to baseline p99 (goal: within 2x), the flood's own rate and statuses, the edge's
counters after it (refusals counted, audit records pending or dropped), and the CPU model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import UAS, Conn, post  # noqa: E402


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


async def steady(port: int, tenant_id: str, stop: asyncio.Event, out: dict[str, list[float]], tag: str) -> None:
    """One client: a beacon batch, then a consent, every 10 ms, each timed, until `stop`."""
    conn = Conn(port)
    n = 0
    while not stop.is_set():
        n += 1
        viewer = f"{tag}-{n % 200}"
        ip = f"81.2.{n % 200}.{hash(tag) % 250 + 1}"
        body = json.dumps({"tenant_id": tenant_id, "viewer_id": viewer, "purposes": ["analytics"],
                           "policy_version": "v1"}).encode()
        started = time.perf_counter()
        status, _ = await conn.request(post("/v1/consent", body, UAS[0], ip))
        out["consent"].append((time.perf_counter() - started) * 1000)
        out["errors"] += status != 201
        now = int(time.time() * 1000)
        events = [{"type": "heartbeat", "ts": now, "view_id": f"{viewer}-w", "video_id": "v", "position_ms": i}
                  for i in range(50)]
        body = json.dumps({"tenant_id": tenant_id, "viewer_id": viewer, "events": events}).encode()
        started = time.perf_counter()
        status, _ = await conn.request(post("/v1/collect", body, UAS[n % len(UAS)], ip))
        out["collect"].append((time.perf_counter() - started) * 1000)
        out["errors"] += status != 202
        await asyncio.sleep(0.01)


async def flood(port: int, total: int, concurrency: int, many_addresses: bool) -> dict:
    statuses: dict[str, int] = {}
    sent = 0

    async def worker() -> None:
        nonlocal sent
        conn = Conn(port)
        while sent < total:
            sent += 1
            ip = f"10.{sent // 65536}.{sent // 256 % 256}.{sent % 256}" if many_addresses else "81.2.69.77"
            raw = f"GET /v1/streams HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-For: {ip}\r\n\r\n".encode()
            status, _ = await conn.request(raw)
            statuses[str(status)] = statuses.get(str(status), 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    return {"requests": total, "wall_s": round(wall, 2), "per_s": round(total / wall), "statuses": statuses}


async def phase(port: int, tenant_id: str, seconds: float, flood_args: tuple | None) -> dict:
    out: dict = {"collect": [], "consent": [], "errors": 0}
    stop = asyncio.Event()
    clients = [asyncio.create_task(steady(port, tenant_id, stop, out, tag)) for tag in ("a", "b")]
    flood_result = None
    started = time.perf_counter()
    if flood_args is not None:
        flood_result = await flood(port, *flood_args)
    await asyncio.sleep(max(0.0, seconds - (time.perf_counter() - started)))
    stop.set()
    await asyncio.gather(*clients)
    return {"collect_p50_ms": percentile(out["collect"], 0.5), "collect_p99_ms": percentile(out["collect"], 0.99),
            "consent_p50_ms": percentile(out["consent"], 0.5), "consent_p99_ms": percentile(out["consent"], 0.99),
            "collect_max_ms": round(max(out["collect"]), 1), "samples": len(out["collect"]),
            "errors": out["errors"], "flood": flood_result}


async def counters(port: int) -> dict:
    conn = Conn(port)
    _, body = await conn.request(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    wanted = ("wave_auth_refused_total", "wave_audit_pending", "wave_audit_dropped_total", "wave_rate_limited_total")
    return {line.split(" ")[0]: float(line.split(" ")[1]) for line in body.decode().splitlines()
            if line.startswith(wanted)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flood", type=int, default=2000)
    ap.add_argument("--flood-concurrency", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wave-flood-"))
    env = dict(os.environ, WAVE_DATA_DIR=str(work / "edge"), WAVE_TRUSTED_PROXIES="127.0.0.1", WAVE_ROLLUP_S="0",
               WAVE_LIMIT_IP="off")
    env.pop("WAVE_CLICKHOUSE_URL", None)
    cli = [sys.executable, "-m", "edge.cli"]
    created = subprocess.run([*cli, "tenant", "create", "bench", "--ip-mode", "full"], cwd=ROOT, env=env,
                             capture_output=True, text=True, check=True)
    tenant_id = json.loads(created.stdout)["tenant_id"]
    port = 18000 + os.getpid() % 1000
    server = subprocess.Popen([*cli, "serve", "--port", str(port)], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                asyncio.run(Conn(port).request(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

        async def run() -> dict:
            await phase(port, tenant_id, 2.0, None)  # warm-up: caches, first inserts
            baseline = await phase(port, tenant_id, args.seconds, None)
            one = await phase(port, tenant_id, args.seconds, (args.flood, args.flood_concurrency, False))
            many = await phase(port, tenant_id, args.seconds, (args.flood, args.flood_concurrency, True))
            after = await counters(port)
            return {"baseline": baseline, "flood_one_address": one, "flood_many_addresses": many, "after": after}

        result = asyncio.run(run())
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)
    base = result["baseline"]["collect_p99_ms"]
    summary = {
        "collect_p99_ms_unloaded": base,
        "collect_p99_ms_flood_one_address": result["flood_one_address"]["collect_p99_ms"],
        "collect_p99_ms_flood_many_addresses": result["flood_many_addresses"]["collect_p99_ms"],
        "ratio_one_address": round(result["flood_one_address"]["collect_p99_ms"] / base, 2),
        "ratio_many_addresses": round(result["flood_many_addresses"]["collect_p99_ms"] / base, 2),
        **result, "cpu_model": cpu_model(), "cpus": os.cpu_count(),
        "setup": {"flood": args.flood, "flood_concurrency": args.flood_concurrency, "seconds": args.seconds,
                  "steady_clients": 2, "beacon_events": 50},
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

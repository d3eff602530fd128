"""Admin flood benchmark: beacon and consent latency, unloaded vs during a keyless flood.

    .venv/bin/python bench/admin_flood.py [--flood 2000] [--flood-seconds 4] [--seconds 6] [--flood-concurrency 64]

Issue #14's attack: 2,000 keyless requests to an admin route in under 4 s made consent,
collect and dashboard calls take 15 s (each 401 wrote an audit row on the shared thread
pool). This measures, in one run against one `wave-edge serve` process (embedded chDB):

1. baseline: `--seconds` of steady beacons (`POST /v1/collect`, 50 events) and consents
   from four clients, each request timed; no other load;
2. the same steady load while `--flood` keyless `GET /v1/streams` arrive spread over
   `--flood-seconds` (the attack's pace: 2,000 in 4 s), all from one address;
3. the same with every flood request from its own address (behind the trusted proxy), so
   the per-address admin limit cannot help and only the cost of a refusal counts;
4. the flood from one address again, unpaced: as fast as `--flood-concurrency`
   connections can send (several times the attack's rate; the edge is one event loop on
   two cores shared with this load generator, so this one measures CPU contention).

Phases 1-3 run `--rounds` times, interleaved (the machine's load drifts; each round's
baseline is its own comparison). Prints one JSON object: p50/p99 per phase for collect
and consent, the median over rounds of flood p99 / baseline p99 (goal: within 2x), the
flood's own rate and statuses, the edge's counters after it (refusals counted, audit
records pending or dropped), the CPU model and the load average.
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

from bench import limits  # noqa: E402
from bench.machine import cpu_model  # noqa: E402
from bench.ingest import UAS, Conn, post  # noqa: E402


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


VIEWERS = 200


async def consent_all(port: int, tenant_id: str) -> None:
    conn = Conn(port)
    for n in range(VIEWERS):
        body = json.dumps({"tenant_id": tenant_id, "viewer_id": f"viewer-{n}", "purposes": ["analytics"],
                           "policy_version": "v1"}).encode()
        status, _ = await conn.request(post("/v1/consent", body, UAS[0], f"81.2.{n}.1"))
        assert status == 201, status


async def consents(port: int, tenant_id: str, stop: asyncio.Event, out: dict) -> None:
    """A consent every 50 ms (each a ledger insert), timed, until `stop`."""
    conn = Conn(port)
    n = 0
    while not stop.is_set():
        n += 1
        body = json.dumps({"tenant_id": tenant_id, "viewer_id": f"late-{time.time_ns()}", "purposes": ["analytics"],
                           "policy_version": "v1"}).encode()
        started = time.perf_counter()
        status, _ = await conn.request(post("/v1/consent", body, UAS[0], f"81.3.{n % 200}.1"))
        out["consent"].append((time.perf_counter() - started) * 1000)
        out["errors"] += status != 201
        await asyncio.sleep(0.05)


async def steady(port: int, tenant_id: str, stop: asyncio.Event, out: dict[str, list[float]], tag: str) -> None:
    """One viewer-like client: a beacon batch of 50 events every 5 ms, timed, until `stop`."""
    conn = Conn(port)
    n = 0
    while not stop.is_set():
        n += 1
        k = (n * 7 + ord(tag)) % VIEWERS
        viewer, ip = f"viewer-{k}", f"81.2.{k}.1"
        now = int(time.time() * 1000)
        events = [{"type": "heartbeat", "ts": now, "view_id": f"{viewer}-w", "video_id": "v", "position_ms": i}
                  for i in range(50)]
        body = json.dumps({"tenant_id": tenant_id, "viewer_id": viewer, "events": events}).encode()
        started = time.perf_counter()
        status, _ = await conn.request(post("/v1/collect", body, UAS[n % len(UAS)], ip))
        out["collect"].append((time.perf_counter() - started) * 1000)
        out["errors"] += status != 202
        await asyncio.sleep(0.005)


async def flood(port: int, total: int, concurrency: int, many_addresses: bool, spread_s: float) -> dict:
    statuses: dict[str, int] = {}
    sent = 0
    began = time.perf_counter()

    async def worker() -> None:
        nonlocal sent
        conn = Conn(port)
        while sent < total:
            sent += 1
            if spread_s:  # request number `sent` is due at sent / total of the spread
                await asyncio.sleep(max(0.0, began + spread_s * sent / total - time.perf_counter()))
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
    clients = [asyncio.create_task(steady(port, tenant_id, stop, out, tag)) for tag in ("a", "b", "c", "d")]
    clients.append(asyncio.create_task(consents(port, tenant_id, stop, out)))
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
    ap.add_argument("--flood-seconds", type=float, default=4.0)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wave-flood-"))
    # The steady beacons and consents are the victims being timed, not the attack: their
    # per-address limit is off. The admin limit stays on: the flood is what it is for.
    env = limits.turned_off(dict(os.environ, WAVE_DATA_DIR=str(work / "edge"), WAVE_TRUSTED_PROXIES="127.0.0.1",
                                 WAVE_ROLLUP_S="0"), "WAVE_LIMIT_IP")
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
            await consent_all(port, tenant_id)
            await phase(port, tenant_id, 2.0, None)  # warm-up: caches, first inserts
            flood = (args.flood, args.flood_concurrency)
            rounds = []
            for _ in range(args.rounds):  # baseline and floods interleaved: the machine's load drifts
                rounds.append({
                    "baseline": await phase(port, tenant_id, args.seconds, None),
                    "flood_one_address": await phase(port, tenant_id, args.seconds, (*flood, False, args.flood_seconds)),
                    "flood_many_addresses": await phase(port, tenant_id, args.seconds, (*flood, True, args.flood_seconds)),
                })
            unpaced = await phase(port, tenant_id, args.seconds, (*flood, False, 0.0))
            return {"rounds": rounds, "flood_unpaced_one_address": unpaced, "after": await counters(port)}

        result = asyncio.run(run())
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)

    def median(values: list[float]) -> float:
        return round(sorted(values)[len(values) // 2], 2)

    rounds = result["rounds"]
    p99 = {kind: [r[kind]["collect_p99_ms"] for r in rounds]
           for kind in ("baseline", "flood_one_address", "flood_many_addresses")}
    summary = {
        "collect_p99_ms_unloaded": median(p99["baseline"]),
        "collect_p99_ms_flood_one_address": median(p99["flood_one_address"]),
        "collect_p99_ms_flood_many_addresses": median(p99["flood_many_addresses"]),
        "collect_p99_ms_flood_unpaced": result["flood_unpaced_one_address"]["collect_p99_ms"],
        "ratio_one_address": median([f / b for f, b in zip(p99["flood_one_address"], p99["baseline"])]),
        "ratio_many_addresses": median([f / b for f, b in zip(p99["flood_many_addresses"], p99["baseline"])]),
        "ratio_unpaced": round(result["flood_unpaced_one_address"]["collect_p99_ms"] / p99["baseline"][-1], 2),
        "collect_p99_ms_per_round": p99,
        **result, "cpu_model": cpu_model(), "cpus": os.cpu_count(),
        "limits": limits.report(env, {
            "WAVE_LIMIT_ADMIN_IP": "on by design: the flood comes from one address (the attack it refuses) and,"
                                   " in flood_many_addresses, from one address per request (where it cannot help)",
            "WAVE_LIMIT_TENANT_EVENTS": "the steady beacons stay under it (4 clients, 50 events each 5 ms)"}),
        "load_average_at_end": os.getloadavg()[0],
        "setup": {"flood": args.flood, "flood_seconds": args.flood_seconds, "flood_concurrency": args.flood_concurrency,
                  "seconds": args.seconds, "rounds": args.rounds, "steady_clients": 4, "beacon_events": 50,
                  "consent_every_ms": 50},
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""N WHEP viewers of one stream that count whole frames instead of decoding them.

    python bench/whep_load.py BASE_URL STREAM_ID VIEWERS SECONDS
        -> {"viewers", "connected", "failed", "failures", "fps": [...]}

aiortc decodes everything it receives; decoding N 720p streams would measure this process,
not the edge. The receivers' decoder is swapped for a counter of the frames aiortc's
jitter buffer hands it (complete frames, in order), so the figure is what the edge
delivered.

A viewer that could not connect (WHEP refused, e.g. 429 from an abuse limit, or ICE never
connected) is not a viewer at 0 fps: it is counted in `failed`, with the reasons in
`failures`, and the process exits 1, so that the caller reports an error, not a capacity.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import httpx
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription, rtcrtpreceiver

counts: dict[int, int] = {}


class CountingDecoder:
    def decode(self, encoded_frame):
        counts[id(self)] = counts.get(id(self), 0) + 1
        return []


rtcrtpreceiver.get_decoder = lambda codec: CountingDecoder()


async def viewer(http: httpx.AsyncClient, stream_id: str) -> RTCPeerConnection:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    r = await http.post(f"/whep/{stream_id}", content=pc.localDescription.sdp,
                        headers={"content-type": "application/sdp"})
    r.raise_for_status()
    await pc.setRemoteDescription(RTCSessionDescription(r.text, "answer"))
    return pc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"WHEP {exc.response.status_code}: {exc.response.text[:200]}"
    return f"{type(exc).__name__}: {exc}"[:200]


async def main(base: str, stream_id: str, n: int, seconds: float) -> int:
    failures: dict[str, int] = {}
    pcs: list[RTCPeerConnection] = []
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        for _ in range(n):
            try:
                pcs.append(await viewer(http, stream_id))
            except (httpx.HTTPError, ValueError) as exc:
                failures[_reason(exc)] = failures.get(_reason(exc), 0) + 1
        await asyncio.sleep(3)  # connect and reach the first keyframe
        for _ in range(120):  # a loaded machine may take longer to connect the last ones
            if all(pc.connectionState in ("connected", "failed") for pc in pcs):
                break
            await asyncio.sleep(0.1)
        for pc in pcs:
            if pc.connectionState != "connected":
                failures[f"ICE {pc.connectionState}"] = failures.get(f"ICE {pc.connectionState}", 0) + 1
        before = dict(counts)
        started = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - started
        fps = sorted(round((counts[k] - before.get(k, 0)) / elapsed, 1) for k in counts)
        for pc in pcs:
            await pc.close()
    failed = sum(failures.values())
    fps += [0.0] * (n - failed - len(fps))  # connected, and got no frame: the edge's doing
    print(json.dumps({"viewers": n, "connected": n - failed, "failed": failed, "failures": failures,
                      "fps": fps}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))))

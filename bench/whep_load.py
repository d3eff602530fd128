"""N WHEP viewers of one stream that count whole frames instead of decoding them.

    python bench/whep_load.py BASE_URL STREAM_ID VIEWERS SECONDS  -> {"viewers", "fps": [...]}

aiortc decodes everything it receives; decoding N 720p streams would measure this process,
not the edge. The receivers' decoder is swapped for a counter of the frames aiortc's
jitter buffer hands it (complete frames, in order), so the figure is what the edge
delivered.
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


async def main(base: str, stream_id: str, n: int, seconds: float) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        pcs = [await viewer(http, stream_id) for _ in range(n)]
        await asyncio.sleep(3)  # connect and reach the first keyframe
        before = dict(counts)
        started = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - started
        fps = sorted(round((counts[k] - before.get(k, 0)) / elapsed, 1) for k in counts)
        for pc in pcs:
            await pc.close()
    fps += [0.0] * (n - len(fps))
    print(json.dumps({"viewers": n, "fps": fps}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))

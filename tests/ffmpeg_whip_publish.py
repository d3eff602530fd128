"""Publish a test pattern with FFmpeg's own WHIP muxer (bundled in PyAV).

Run as a separate process: PyAV holds the GIL while FFmpeg connects, which would freeze
an edge running in the same process.  Usage: python ffmpeg_whip_publish.py URL TOKEN SECONDS
"""

import fractions
import sys
import time

import av
import numpy as np


def main(url: str, token: str, seconds: float) -> None:
    out = av.open(url, "w", format="whip", options={"authorization": token})
    video = out.add_stream("libx264", rate=30, options={
        "preset": "ultrafast", "tune": "zerolatency", "profile": "baseline", "x264-params": "keyint=30:bframes=0"})
    video.width, video.height, video.pix_fmt = 640, 360, "yuv420p"
    started = time.monotonic()
    for i in range(int(seconds * 30)):
        img = np.zeros((360, 640, 3), np.uint8)
        img[:, (i * 4) % 640:(i * 4) % 640 + 4] = 255
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts, frame.time_base = i, fractions.Fraction(1, 30)
        for packet in video.encode(frame):
            out.mux(packet)
        time.sleep(max(0.0, started + (i + 1) / 30 - time.monotonic()))
    out.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))

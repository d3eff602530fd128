"""SDP rewriting needed to relay encoded packets.

A WHEP viewer must receive exactly what the shared encoder makes (H.264, packetization
mode 1), but browsers and aiortc offer VP8 first and aiortc's answer follows the offer's
order. So before answering, the offer's video section is narrowed to its H.264
(packetization-mode=1) payload types and their RTX companions.
"""

from __future__ import annotations

import re


class NoH264(ValueError):
    pass


def only_h264(offer: str) -> str:
    lines = offer.replace("\r\n", "\n").split("\n")
    out: list[str] = []
    section: list[str] = []

    def flush() -> None:
        if section and section[0].startswith("m=video"):
            out.extend(_narrow_video(section))
        else:
            out.extend(section)

    for line in lines:
        if line.startswith("m="):
            flush()
            section = [line]
        elif section:
            section.append(line)
        else:
            out.append(line)
    flush()
    return "\r\n".join(out)


def _narrow_video(section: list[str]) -> list[str]:
    rtpmap = {}
    fmtp = {}
    for line in section:
        if m := re.match(r"a=rtpmap:(\d+) ([^/]+)/", line):
            rtpmap[m.group(1)] = m.group(2).upper()
        elif m := re.match(r"a=fmtp:(\d+) (.*)", line):
            fmtp[m.group(1)] = m.group(2)
    h264 = [pt for pt, name in rtpmap.items() if name == "H264" and "packetization-mode=1" in fmtp.get(pt, "")]
    if not h264:
        raise NoH264("the viewer must accept H.264 (packetization-mode=1)")
    rtx = [pt for pt, name in rtpmap.items() if name == "RTX" and re.search(r"apt=(\d+)", fmtp.get(pt, ""))
           and re.search(r"apt=(\d+)", fmtp[pt]).group(1) in h264]
    keep = set(h264 + rtx)
    head = section[0].split(" ")
    narrowed = [" ".join(head[:3] + [pt for pt in head[3:] if pt in keep])]
    for line in section[1:]:
        m = re.match(r"a=(?:rtpmap|fmtp|rtcp-fb):(\d+)", line)
        if m and m.group(1) not in keep:
            continue
        narrowed.append(line)
    return narrowed

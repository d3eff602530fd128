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


# Simulcast (RFC 8853). aiortc cannot receive several layers of one track, and when an
# answer leaves simulcast out, browsers keep only the *first* encoding the page listed,
# which most pages list smallest first (q, h, f): the edge got a quarter-size picture.
# So a simulcast offer is answered as accepting exactly one layer, the largest, and the
# browser sends that one alone (its RTP carries the rid header extension, kept in the
# answer; aiortc routes it by mid).
_RID_EXT = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
# Names pages use for the full-size layer, most telling first: q/h/f (mediasoup, whip-whep
# demos), l/m/h and h/m/l (Janus), low/mid/high.
_LARGEST_NAMES = ("f", "full", "high", "hi", "h")


def keep_largest_simulcast_layer(offer: str, answer: str) -> str:
    """The answer, with each video section that the offer sends as simulcast accepting one
    layer: the largest by the offer's `max-width`/`max-height`, else by its name, else the
    first listed (what a browser would keep anyway)."""
    choices = {mid: rid for mid, rid in _simulcast_choices(offer)}
    if not choices:
        return answer
    sections = _sections(answer)
    out: list[str] = []
    for section in sections:
        out.extend(section)
        mid = next((line[6:] for line in section if line.startswith("a=mid:")), None)
        if section[0].startswith("m=video") and mid in choices:
            rid, ext_id = choices[mid]
            while out and out[-1] == "":
                out.pop()
            if ext_id is not None and not any(_RID_EXT in line for line in section):
                out.append(f"a=extmap:{ext_id} {_RID_EXT}")
            out += [f"a=rid:{rid} recv", f"a=simulcast:recv {rid}"]
    return "\r\n".join(out) + "\r\n"


def _sections(sdp: str) -> list[list[str]]:
    sections: list[list[str]] = [[]]
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if line.startswith("m="):
            sections.append([line])
        elif line:
            sections[-1].append(line)
    return sections


def _simulcast_choices(offer: str):
    for section in _sections(offer)[1:]:
        if not section[0].startswith("m=video"):
            continue
        mid = next((line[6:] for line in section if line.startswith("a=mid:")), None)
        sim = next((line for line in section if line.startswith("a=simulcast:send ")), None)
        if mid is None or sim is None:
            continue
        listed = [r.lstrip("~") for alt in sim.split(" ", 1)[1].split(";") for r in alt.split(",") if r]
        params = {}
        for line in section:
            if m := re.match(r"a=rid:(\S+) send\s*(.*)", line):
                params[m.group(1)] = dict(kv.split("=", 1) for kv in m.group(2).split(";") if "=" in kv)
        rids = [r for r in listed if r in params] or listed
        if not rids:
            continue
        ext_id = next((line.split(":", 1)[1].split(" ")[0] for line in section
                       if line.startswith("a=extmap:") and _RID_EXT in line), None)
        yield mid, (_largest(rids, params), ext_id.split("/")[0] if ext_id else None)


def _largest(rids: list[str], params: dict[str, dict[str, str]]) -> str:
    def area(rid: str) -> int:
        p = params.get(rid, {})
        try:
            return int(p.get("max-width", 0)) * int(p.get("max-height", 0)) or int(p.get("max-fs", 0))
        except ValueError:
            return 0
    if any(area(r) for r in rids):
        return max(rids, key=area)
    for name in _LARGEST_NAMES:
        for rid in rids:
            if rid.lower() == name:
                return rid
    return rids[0]

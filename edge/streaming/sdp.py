"""SDP rewriting and checks done on offers before aiortc answers them.

A WHEP viewer must receive exactly what the shared encoder makes (H.264, packetization
mode 1; Opus), but browsers and aiortc offer VP8 first, some players offer PCMU before
Opus, and aiortc's answer follows the offer's order (and the relay sends under the
answer's first payload type). So before answering, the offer's video section is narrowed
to its H.264 (packetization-mode=1) payload types and their RTX companions, and its audio
section to Opus.

Offers come from anyone (WHEP needs no credentials), and aiortc acts on every candidate
in them: it resolves each `.local` (mDNS) name before answering (a second's wait, and a
multicast query on the edge's network, for a name a data centre never resolves) and
checks every address listed (STUN sent wherever the offer says). `tidy_candidates`
drops the mDNS ones (the connection still forms from the peer's own checks, as a
peer-reflexive candidate: RFC 8838) and keeps at most `MAX_CANDIDATES` per section.
"""

from __future__ import annotations

import re

# A browser lists a few per network interface (UDP and TCP, IPv4 and IPv6): a dozen on a
# well-connected laptop. RFC 8445 §6.1.2.5 caps the checks an agent makes at 100.
MAX_CANDIDATES = 20


class NoH264(ValueError):
    pass


def narrow_for_relay(offer: str) -> str:
    """The offer with its video narrowed to H.264 and its audio to Opus (a section with
    no Opus is left as it is: the caller does not send audio to it)."""
    lines = offer.replace("\r\n", "\n").split("\n")
    out: list[str] = []
    section: list[str] = []

    def flush() -> None:
        if section and section[0].startswith("m=video"):
            out.extend(_narrow_video(section))
        elif section and section[0].startswith("m=audio"):
            out.extend(_narrow(section, _payloads(section, "OPUS")) if has_codec(section, "OPUS") else section)
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


def _codec_maps(section: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    rtpmap = {}
    fmtp = {}
    for line in section:
        if m := re.match(r"a=rtpmap:(\d+) ([^/]+)/", line):
            rtpmap[m.group(1)] = m.group(2).upper()
        elif m := re.match(r"a=fmtp:(\d+) (.*)", line):
            fmtp[m.group(1)] = m.group(2)
    return rtpmap, fmtp


def _payloads(section: list[str], codec: str) -> set[str]:
    return {pt for pt, name in _codec_maps(section)[0].items() if name == codec}


def has_codec(section: list[str], codec: str) -> bool:
    return bool(_payloads(section, codec))


def _narrow_video(section: list[str]) -> list[str]:
    rtpmap, fmtp = _codec_maps(section)
    h264 = [pt for pt, name in rtpmap.items() if name == "H264" and "packetization-mode=1" in fmtp.get(pt, "")]
    if not h264:
        raise NoH264("the viewer must accept H.264 (packetization-mode=1)")
    rtx = [pt for pt, name in rtpmap.items() if name == "RTX" and re.search(r"apt=(\d+)", fmtp.get(pt, ""))
           and re.search(r"apt=(\d+)", fmtp[pt]).group(1) in h264]
    return _narrow(section, set(h264 + rtx))


def _narrow(section: list[str], keep: set[str]) -> list[str]:
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


def media_sections(sdp: str) -> list[list[str]]:
    """The offer's media sections that are not rejected, each a list of lines: port 0
    rejects a section unless it is `a=bundle-only` (JSEP offers those with port 0)."""
    return [s for s in _sections(sdp)[1:]
            if len(s[0].split(" ")) > 1 and (s[0].split(" ")[1] != "0" or "a=bundle-only" in s)]


def tidy_candidates(sdp: str) -> str:
    """The SDP without `.local` candidates and with at most MAX_CANDIDATES per section."""
    out: list[str] = []
    kept = 0
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if line.startswith("m="):
            kept = 0
        elif line.startswith("a=candidate:"):
            fields = line.split(" ")
            if len(fields) > 4 and fields[4].lower().endswith(".local"):
                continue
            kept += 1
            if kept > MAX_CANDIDATES:
                continue
        out.append(line)
    return "\r\n".join(out)


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

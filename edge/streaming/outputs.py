"""Where a live stream's encoded packets go: one small interface, any number of outputs.

The encoder (`pipeline.py`) encodes each stream once (H.264, AAC for HLS, Opus for
WebRTC) and knows no container or transport: it hands every packet to the outputs it
was given. Today those are the WHEP relay (`relay.RelayOutput`) and the LL-HLS writer
(`hls_writer.HlsWriter`, whose segments are also the recording); a lower rendition of the
live ladder is an `Output` too (another writer), fed by the encoder's scaled encode of
the same pictures (`renditions.Rendition`).

Every method runs on the encoder's thread, in the order the outputs were given, and may
block that thread only as long as it can afford to drop frames (the encoder's queue is
bounded). An output that must reach the event loop hands its work over itself. A packet
is lent for the call: copy what you keep, and expect a muxer before you to have set its
`stream` and rebased its timestamps (read `packet.time_base`, never assume one).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

import av


@dataclass(frozen=True)
class Encoded:
    """What the encoders produce, fixed when the first picture arrives."""

    width: int
    height: int
    frame_rate: int  # nominal; timestamps are the real clock
    video_time_base: Fraction
    h264_headers: bytes  # SPS and PPS in Annex B; the encoder keeps them out of the packets
    audio_rate: int
    aac_config: bytes | None  # the AAC AudioSpecificConfig; None when the stream has no audio


class Output(Protocol):
    def open(self, encoded: Encoded) -> None:
        """The first picture arrived and the encoders are ready; no packet came before."""

    def video(self, packet: av.Packet) -> None:
        """H.264 in Annex B, without SPS/PPS (they are in `Encoded.h264_headers`)."""

    def audio_aac(self, packet: av.Packet) -> None:
        """AAC-LC, 1024 samples a packet, raw (no ADTS)."""

    def audio_opus(self, packet: av.Packet) -> None:
        """Opus, 20 ms a packet."""

    def close(self) -> None:
        """The publish ended and the encoders are flushed; called even if `open` never was."""

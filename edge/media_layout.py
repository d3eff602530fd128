"""Where media lives and what its files are called: ids, directories and file names.

Every module that writes media (the live HLS writer, the VOD packager, recordings,
uploads, the public link tree) and every one that reads it (HLS and VOD serving, the
embed, the nginx front and its hand-off log) takes names from here, so the layout is
decided once. It is also a safety rule: a request names a file only by matching these
patterns, never by a path, so nothing outside the media directory can be asked for.

```
$WAVE_DATA_DIR/media/
  videos/vd_<region>_<16 hex>/   init.mp4, seg_NNNNN.m4s, vod.m3u8, poster.jpg (and, while it is
                        a live publish's directory, the sliding index.m3u8, the newest
                        segments' parts part_NNNNN_M.m4s, and r<height>_* live renditions)
                        since the ladder: main.m3u8 (multivariant), r<H>.m3u8 per rendition
                        (the top one over init.mp4 and seg_*, the lower ones over
                        r<H>_init.mp4 and r<H>_NNNNN.m4s) instead of vod.m3u8; and
                        storyboard.vtt with sprite-N.jpg (seek previews)
  uploads/vd_<region>_<16 hex>.part
  public/{vod,live}/<media id> -> ../../videos/vd_...   (public media only)
```

A live publish writes straight into its recording's video directory: the live segments
are the recording.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Literal

from core.regions import REGION_PATTERN, tagged

# -- ids ------------------------------------------------------------------------------
STREAM_PREFIX = "st_"
VIDEO_PREFIX = "vd_"
_HEX = 16  # random hex digits after the prefix
# New ids carry the owning tenant's region (`st_eu_<hex>`, core/regions.py), so a request
# naming media can be sent to its region by any edge; ids without one (made before
# regions) stay valid. Regular-expression sources, for patterns composed elsewhere (the
# nginx front's location, the region redirect).
_TAIL = rf"_(?:{REGION_PATTERN}_)?[0-9a-f]{{{_HEX}}}"
MEDIA_ID_PATTERN = rf"(?:vd|st){_TAIL}"
STREAM_ID = re.compile(rf"^st{_TAIL}$")
VIDEO_ID = re.compile(rf"^vd{_TAIL}$")
MEDIA_ID = re.compile(rf"^{MEDIA_ID_PATTERN}$")


def new_stream_id(region: str | None = None) -> str:
    return tagged(STREAM_PREFIX, region, secrets.token_hex(_HEX // 2))


def new_video_id(region: str | None = None) -> str:
    return tagged(VIDEO_PREFIX, region, secrets.token_hex(_HEX // 2))


# -- file names -----------------------------------------------------------------------
PLAYLIST = "index.m3u8"  # the live playlist; the name players ask for, live or VOD
INIT = "init.mp4"  # the fMP4 initialization section
VOD_PLAYLIST = "vod.m3u8"  # a finished video's one playlist before the ladder, served as index.m3u8
POSTER = "poster.jpg"
PACKAGER_PLAYLIST = "hls.m3u8"  # what FFmpeg's muxer writes while packaging an upload (unused after)
SEGMENT_TEMPLATE = "seg_%05d.m4s"  # FFmpeg's `hls_segment_filename` pattern
SEGMENT = re.compile(r"^seg_(\d+)\.m4s$")
SEGMENT_FILE_PATTERN = r"seg_[0-9]{5,9}\.m4s"  # the segment names a request may use
# Live (LL-HLS): a segment's parts, `part_<segment number>_<part index>.m4s`, exist only
# while it is near the live edge (the whole segment stays: it is the recording). A lower
# live rendition (the tenant's ladder) writes the same files with a `r<height>_` prefix and
# its own media playlist `r<height>.m3u8`; with renditions, `index.m3u8` is the
# multivariant playlist and the source's media playlist is `src.m3u8`.
PART_FILE_PATTERN = r"part_[0-9]{5,9}_[0-9]{1,3}\.m4s"
RENDITION_PREFIX_PATTERN = r"r[0-9]{3,4}_"
SOURCE_PLAYLIST = "src.m3u8"
PART = re.compile(r"^(r[0-9]{3,4}_)?part_([0-9]{5,9})_([0-9]{1,3})\.m4s$")
_LIVE_FILE = rf"(?:{RENDITION_PREFIX_PATTERN})?(?:init\.mp4|{SEGMENT_FILE_PATTERN}|{PART_FILE_PATTERN})"
# The files a request may name in a media directory, and the ones a front serves itself.
SERVED_FILE = re.compile(rf"^(index\.m3u8|src\.m3u8|r[0-9]{{3,4}}\.m3u8|{_LIVE_FILE}|poster\.jpg)$")
FRONT_FILE_PATTERN = _LIVE_FILE


def segment_template(directory: Path) -> str:
    return str(directory / SEGMENT_TEMPLATE)


# -- VOD renditions and seek previews ---------------------------------------------------
# A ready video's `index.m3u8` is MULTIVARIANT when it exists (every video packaged since
# the ladder), else the single media playlist VOD_PLAYLIST (videos packaged before it).
# An upload's rungs are named by their picture height (`r720`): flat names in the video's
# directory, so a request still names a file, never a path.
MULTIVARIANT = "main.m3u8"
STORYBOARD = "storyboard.vtt"
SPRITE_TEMPLATE = "sprite-{}.jpg"
_RUNG = r"r[0-9]{2,4}"
VOD_FILE = re.compile(
    rf"^(index\.m3u8|init\.mp4|{SEGMENT_FILE_PATTERN}|poster\.jpg|storyboard\.vtt|sprite-[0-9]{{1,3}}\.jpg"
    rf"|{_RUNG}\.m3u8|{_RUNG}_init\.mp4|{_RUNG}_[0-9]{{5,9}}\.m4s)$")
# What the front serves itself for public VOD (never playlists or the storyboard's text):
# the lower renditions' files (plays, handed to the session history) and sprites (not).
VOD_FRONT_FILE_PATTERN = rf"{_RUNG}_init\.mp4|{_RUNG}_[0-9]{{5,9}}\.m4s"
SPRITE_FILE_PATTERN = r"sprite-[0-9]{1,3}\.jpg"


def rung_name(height: int) -> str:
    """A rendition's file stem, from its picture height (`r720`)."""
    return f"r{height}"


def rung_playlist(height: int) -> str:
    return f"{rung_name(height)}.m3u8"


def rung_init(height: int) -> str:
    return f"{rung_name(height)}_init.mp4"


def rung_segment_template(directory: Path, height: int) -> str:
    return str(directory / f"{rung_name(height)}_%05d.m4s")


def rung_segments(directory: Path, height: int) -> list[Path]:
    """A rung's segments in order."""
    pattern = re.compile(rf"^{rung_name(height)}_(\d+)\.m4s$")
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := pattern.match(p.name))]
    return [p for _, p in sorted(found)]


def sprite_name(index: int) -> str:
    return SPRITE_TEMPLATE.format(index)


def rendition_prefix(height: int | None) -> str:
    """The file-name prefix of a live rendition: "" for the source, `r360_` for 360p."""
    return "" if height is None else f"r{height}_"


def segment_name(msn: int, prefix: str = "") -> str:
    return f"{prefix}seg_{msn:05d}.m4s"


def part_name(msn: int, index: int, prefix: str = "") -> str:
    return f"{prefix}part_{msn:05d}_{index}.m4s"


_LIVE_RENDITION_FILE = re.compile(
    rf"^({RENDITION_PREFIX_PATTERN}(?:init\.mp4|{SEGMENT_FILE_PATTERN}|{PART_FILE_PATTERN})|r[0-9]{{3,4}}\.m3u8|src\.m3u8)$")


def live_rendition_files(directory: Path) -> list[Path]:
    """A finished publish's live-only files: the lower live renditions and the source's
    live media playlist. The recording is the source's segments; its own lower rungs are
    made afresh by the VOD ladder under the same `r<H>` stems, so these must go first."""
    if not directory.exists():
        return []
    return [p for p in directory.iterdir() if _LIVE_RENDITION_FILE.match(p.name)]


def media_playlist_name(prefix: str) -> str:
    """A rendition's live media playlist: `src.m3u8` for the source, `r360.m3u8`..."""
    return SOURCE_PLAYLIST if not prefix else f"{prefix[:-1]}.m3u8"


# -- directories ----------------------------------------------------------------------
PublicKind = Literal["vod", "live"]


def videos_dir(media_dir: Path) -> Path:
    return media_dir / "videos"


def videos_on_disk(media_dir: Path) -> list[str]:
    """The videos whose directories exist (a backup's media index)."""
    videos = videos_dir(media_dir)
    return sorted(p.name for p in videos.iterdir()) if videos.is_dir() else []


def video_dir(media_dir: Path, video_id: str) -> Path:
    return videos_dir(media_dir) / video_id


def upload_path(media_dir: Path, video_id: str) -> Path:
    return media_dir / "uploads" / f"{video_id}.part"


def public_dir(media_dir: Path) -> Path:
    """The tree of symlinks a front web server serves from (`edge/public_media.py`)."""
    return media_dir / "public"


def public_link(media_dir: Path, kind: PublicKind, media_id: str) -> Path:
    if not MEDIA_ID.match(media_id):
        raise ValueError(f"not a media id: {media_id!r}")
    return public_dir(media_dir) / kind / media_id

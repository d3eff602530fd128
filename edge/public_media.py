"""The public link tree: what a front web server may serve without asking Python.

Python answers a few thousand segment requests a second; nginx with `sendfile` answers
tens of thousands. So the edge keeps `$WAVE_DATA_DIR/media/public/{vod,live}/{id}` as
symlinks to the directories of *public* media only, and the shipped nginx front
(`wave-edge front-config`) serves `init.mp4` and segments from that tree, falling back to
the edge for everything else: playlists (live ones change; private ones get tokens
written in), private media (its token is checked by the edge) and media whose link is
not there yet. A missing link therefore costs speed, never correctness; a link that
should not exist is the only risk, so links go away first when media is deleted.

Each link is replaced atomically (a new symlink renamed over the old), so nginx never
sees a half-made one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable

from edge import media_layout
from edge.media_layout import PublicKind as Kind

log = logging.getLogger(__name__)


class PublicLinks:
    def __init__(self, media_dir: Path) -> None:
        self.media_dir = media_dir
        self.root = media_layout.public_dir(media_dir)

    def _path(self, kind: Kind, media_id: str) -> Path:
        return media_layout.public_link(self.media_dir, kind, media_id)

    def link(self, kind: Kind, media_id: str, target: Path) -> None:
        path = self._path(kind, media_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{media_id}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        os.symlink(os.path.relpath(target.resolve(), path.parent.resolve()), tmp)
        os.replace(tmp, path)

    def unlink(self, kind: Kind, media_id: str) -> None:
        self._path(kind, media_id).unlink(missing_ok=True)

    def sync_videos(self, public_ready: Iterable[tuple[str, Path]]) -> int:
        """Make the VOD links exactly the given (video id, directory) pairs; returns links made."""
        wanted = {video_id: directory for video_id, directory in public_ready}
        base = self.root / "vod"
        base.mkdir(parents=True, exist_ok=True)
        for existing in base.iterdir():
            if existing.name not in wanted:
                existing.unlink(missing_ok=True)
        made = 0
        for video_id, directory in wanted.items():
            path = base / video_id
            if not path.is_symlink() or not path.exists():
                self.link("vod", video_id, directory)
                made += 1
        return made

"""Every publish is recorded: a `recording` video row while live, `ready` when it ends.

The live pipeline's segments are the recording (nothing is written twice). When the
publish ends, or at the next start after a crash, the segments on disk are listed in a
VOD playlist and the row gets duration, resolution, codecs and size, or `failed` with
the reason if not one whole segment exists.

Then, in the fair packaging queue with the uploads (`jobs.FairJobs`, one job per tenant at
a time), the recording gets the ladder's lower rungs from its own segments
(`packager.add_renditions`) and its multivariant playlist is written again over them: the
video plays from the moment it is `ready`, with one rendition, and gains the others when
they are done. A failure there costs only the extra renditions, never the recording.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path
from typing import Protocol

from core.regions import region_of
from core.store import Store
from edge import media_layout
from edge.media_layout import video_dir
from edge.public_media import PublicLinks
from edge.streaming.registry import Stream
from edge.vod import package, packager, videos
from edge.vod.jobs import FairJobs
from edge.vod.limits import MediaLimits

log = logging.getLogger(__name__)


class Writing(Protocol):
    """What writes a recording's segments (the live encoder): it can be waited for."""

    def join(self, timeout: float | None = None) -> bool: ...


class Recordings:
    def __init__(self, store: Store, media_dir: Path, links: PublicLinks, jobs: FairJobs | None = None,
                 limits: MediaLimits = MediaLimits()) -> None:
        self._store = store
        self._media_dir = media_dir
        self._links = links
        self._jobs = jobs  # None: recordings keep their one rendition
        self._limits = limits

    async def begin(self, stream: Stream) -> tuple[videos.Video, Path]:
        video = videos.Video(
            video_id=videos.new_video_id(region_of(stream.tenant_id)),
            tenant_id=stream.tenant_id,
            title=f"{stream.name} {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
            source="recording",
            stream_id=stream.stream_id,
            playback=stream.playback,
            status="recording",
        )
        await asyncio.to_thread(videos.save, self._store, video)
        return video, video_dir(self._media_dir, video.video_id)

    async def end(self, video: videos.Video, writer: Writing) -> videos.Video:
        """Wait for the writer's last segment, then make the video ready."""
        await asyncio.to_thread(writer.join, 30)
        await asyncio.to_thread(_drop_live_renditions, video_dir(self._media_dir, video.video_id))
        video = await asyncio.to_thread(self.finalize, video)
        if video.status == "ready" and self._jobs is not None:
            await self.add_renditions(video)
        return video

    async def add_renditions(self, video: videos.Video) -> None:
        """The ladder's lower rungs for a ready recording, in the tenant's packaging turn."""
        directory = video_dir(self._media_dir, video.video_id)
        async with self._jobs.turn(video.tenant_id):
            try:
                added = await asyncio.to_thread(packager.add_renditions, directory, self._limits)
                if not added:
                    return
                probe = await asyncio.to_thread(package.finalize, directory)
            except Exception as exc:  # the recording stays as it was: one rendition
                log.warning("renditions for recording %s failed: %s", video.video_id, exc)
                for extra in directory.glob("r*_*"):
                    extra.unlink(missing_ok=True)
                return
        current = await asyncio.to_thread(videos.get, self._store, video.video_id)
        if current is None:  # deleted meanwhile: its files too
            shutil.rmtree(directory, ignore_errors=True)
            return
        current.size_bytes = probe.size_bytes
        await asyncio.to_thread(videos.save, self._store, current)

    def finalize(self, video: videos.Video) -> videos.Video:
        try:
            probe = package.finalize(video_dir(self._media_dir, video.video_id))
        except (ValueError, OSError) as exc:
            video.status, video.reason = "failed", str(exc)
        else:
            video.mark_ready(probe)
        videos.save(self._store, video)
        if video.status == "ready" and video.playback == "public":
            self._links.link("vod", video.video_id, video_dir(self._media_dir, video.video_id))
        return video

    def recover(self) -> list[videos.Video]:
        """Finish recordings a crashed process left open (run before serving)."""
        done = []
        for video in videos.in_status(self._store, "recording"):
            log.info("finishing recording %s left by a previous process", video.video_id)
            _drop_live_renditions(video_dir(self._media_dir, video.video_id))
            done.append(self.finalize(video))
        return done

    async def resume(self) -> list[asyncio.Task]:
        """`recover`, then, as `end` does, queue the lower rungs of each recording that came
        out ready: a crash mid-publish costs nothing but the live viewers' connection.
        Returns the queued tasks (the caller keeps them until they finish)."""
        done = await asyncio.to_thread(self.recover)
        if self._jobs is None:
            return []
        loop = asyncio.get_running_loop()
        return [loop.create_task(self.add_renditions(video)) for video in done if video.status == "ready"]


def _drop_live_renditions(directory: Path) -> None:
    for path in media_layout.live_rendition_files(directory):
        path.unlink(missing_ok=True)

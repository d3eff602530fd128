"""`POST /v1/videos`: a multipart upload streamed to disk under a size cap, then packaged
in the background: a few at a time and at most one per tenant (`jobs.FairJobs`: packaging
is CPU-bound, the edge keeps serving, and no tenant's uploads wait behind another's), each
within the work limits of `limits.MediaLimits`.

Form fields: `file` (the media, required), `title`, `tags` (comma-separated).
The answer is 202 with the new video's id; `GET /v1/videos/{id}` shows progress.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path

from litestar import Request, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from multipart import MultipartError, MultipartSegment, PushMultipartParser, parse_options_header

from core.openapi import ADMIN, body, errors, MULTIPART
from core.tenants import Tenant
from core.validation import ascii_int, BadInput
from edge.media_layout import upload_path, video_dir
from edge.vod import package, packager, videos
from edge.vod.wire import UploadAccepted

log = logging.getLogger(__name__)
FIELD_MAX = 4096


@post("/v1/videos", status_code=202, request_max_body_size=None, responses=errors(*ADMIN, 415),
      opt=body(MULTIPART, MULTIPART))
async def upload_video(request: Request, state: State, tenant: NamedDependency[Tenant]) -> UploadAccepted:
    """Upload a video (multipart/form-data, field `file`); it is packaged as HLS."""
    edge = state.edge
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != "multipart/form-data" or not options.get("boundary"):
        raise BadInput("unsupported_media_type", "send the video as multipart/form-data (field 'file')", status=415)
    limit = edge.settings.upload_max_bytes
    declared = ascii_int(request.headers.get("content-length"), 20)
    if declared is not None and declared > limit + 64 * 1024:
        raise BadInput("body_too_large", f"uploads are limited to {limit} bytes", status=413)

    video_id = videos.new_video_id(tenant.region)
    target = upload_path(edge.settings.media_dir, video_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    fields = await _receive(request, options["boundary"], target, limit)
    if "file" not in fields:
        target.unlink(missing_ok=True)
        raise BadInput("invalid_field", "the form has no 'file' field", "$.form.file")
    playback = fields.get("playback") or "public"
    if playback not in ("public", "private"):
        target.unlink(missing_ok=True)
        raise BadInput("invalid_field", "playback must be 'public' or 'private'", "$.form.playback")
    video = videos.Video(
        video_id=video_id,
        tenant_id=tenant.tenant_id,
        title=(fields.get("title") or fields["file"] or "untitled")[:300],
        tags=[t.strip() for t in (fields.get("tags") or "").split(",") if t.strip()][:50],
        source="upload",
        playback=playback,  # type: ignore[arg-type]
        status="processing",
    )
    await asyncio.to_thread(videos.save, edge.store, video)
    schedule(edge, video, target)
    return UploadAccepted(video_id=video_id, status=video.status)


def schedule(edge, video: videos.Video, source: Path) -> None:
    task = asyncio.get_running_loop().create_task(_process(edge, video, source))
    edge.finishing.add(task)
    task.add_done_callback(edge.finishing.discard)


async def resume(edge) -> None:
    """Uploads a stopped or crashed process was still packaging: start them again from the
    received file, or fail them if it is gone, so none stays `processing` forever."""
    for video in await asyncio.to_thread(videos.in_status, edge.store, "processing"):
        source = upload_path(edge.settings.media_dir, video.video_id)
        if source.exists():
            shutil.rmtree(video_dir(edge.settings.media_dir, video.video_id), ignore_errors=True)
            video.progress = 0.0
            schedule(edge, video, source)
        else:
            video.status, video.reason = "failed", "interrupted before the upload was complete"
            await asyncio.to_thread(videos.save, edge.store, video)


async def _receive(request: Request, boundary: str, target: Path, limit: int) -> dict[str, str]:
    """Stream the form to disk; small fields are returned, `file` maps to its filename."""
    fields: dict[str, str] = {}
    written = 0
    current: MultipartSegment | None = None
    value = bytearray()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with PushMultipartParser(boundary, max_segment_count=16) as parser:
            async for chunk in request.stream():
                for event in parser.parse(chunk):
                    if isinstance(event, MultipartSegment):
                        current, value = event, bytearray()
                    elif event is None:
                        if current is not None and current.name != "file":
                            fields[current.name] = value.decode("utf-8", "replace")
                        elif current is not None:
                            fields["file"] = current.filename or ""
                        current = None
                    elif current is not None and current.name == "file":
                        written += len(event)
                        if written > limit:
                            raise BadInput("body_too_large", f"uploads are limited to {limit} bytes", status=413)
                        await asyncio.to_thread(os.write, fd, event)
                    elif current is not None:
                        value += event
                        if len(value) > FIELD_MAX:
                            raise BadInput("invalid_field", f"field {current.name!r} is too long", f"$.form.{current.name}")
            for event in parser.parse(b""):
                pass
    except MultipartError as exc:
        target.unlink(missing_ok=True)
        raise BadInput("invalid_multipart", f"the form data is malformed: {exc}") from None
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
    return fields


async def _process(edge, video: videos.Video, source: Path) -> None:
    """Package, probe and mark ready, or failed with the reason; never raises."""
    directory = video_dir(edge.settings.media_dir, video.video_id)

    def progress(percent: float) -> None:  # called on the packaging thread
        video.progress = percent
        videos.save(edge.store, video)

    async with edge.packaging.turn(video.tenant_id):
        try:
            how = await asyncio.to_thread(packager.package_upload, source, directory, progress,
                                          edge.settings.upload_limits)
            probe = await asyncio.to_thread(package.finalize, directory)
        except (packager.Unplayable, ValueError, OSError) as exc:
            video.status, video.reason = "failed", str(exc)
            shutil.rmtree(directory, ignore_errors=True)
        except Exception:  # a bug must not leave the video "processing" forever
            log.exception("packaging %s failed unexpectedly", video.video_id)
            video.status, video.reason = "failed", "internal error while packaging"
            shutil.rmtree(directory, ignore_errors=True)
        else:
            video.mark_ready(probe)
            video.metadata = {**video.metadata, "packaging": how}
        finally:
            source.unlink(missing_ok=True)
    if await asyncio.to_thread(videos.get, edge.store, video.video_id) is None:
        shutil.rmtree(directory, ignore_errors=True)  # deleted while it was being packaged
        return
    await asyncio.to_thread(videos.save, edge.store, video)
    if video.status == "ready" and video.playback == "public":
        edge.public_links.link("vod", video.video_id, directory)


ROUTES = [upload_video]

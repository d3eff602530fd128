"""Interop with WHIP/WHEP clients nobody here wrote, unmodified, in headless Chromium.

`whip-whep` 1.2 (the WHIP/WHEP clients by the WHIP RFC's author), `@eyevinn/whip-web-client`
1.1 and `@eyevinn/webrtc-player` 0.13 come from npm, pinned in player/package-lock.json
and bundled by esbuild into player/test-dist/interop.js. A studio page on its own origin
(another port: another origin, as a tenant's own site would be) publishes a fake camera to
the edge and plays it back; FFmpeg's WHIP muxer is tried in test_whip_hls.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import threading
import time
from pathlib import Path

import httpx

from tests.browser import FAKE_MEDIA, chromium
from tests.conftest import free_port
from tests.edge.test_whip_hls import _wait_segments

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "player" / "test-dist" / "interop.js"

# Every fetch the clients make is logged with its answer, so a test can say which calls
# the edge refused; a CORS refusal shows as status "blocked".
STUDIO = """<!doctype html><meta charset="utf-8"><title>studio</title><link rel="icon" href="data:,">
<video id="out" autoplay muted playsinline></video>
<script src="interop.js"></script>
<script>
window.calls = [];
const realFetch = window.fetch.bind(window);
window.fetch = async (input, init = {}) => {
  const entry = [init.method || "GET", String(input), null, init.method === "PATCH" ? String(init.body) : null];
  window.calls.push(entry);
  try { const r = await realFetch(input, init); entry[2] = r.status; return r; }
  catch (e) { entry[2] = "blocked"; throw e; }
};
window.camera = () => navigator.mediaDevices.getUserMedia({ video: true, audio: true });
window.publishWhipWhep = async (url, token) => {
  const stream = await camera();
  const pc = new RTCPeerConnection({ iceServers: [] });
  for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: "sendonly" });
  const client = new interop.WhipWhepPublisher();
  window.whip = client;
  window.whipPc = pc;
  await client.publish(pc, url, token);
};
window.viewWhipWhep = async (url) => {
  const pc = new RTCPeerConnection({ iceServers: [] });
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const media = new MediaStream();
  pc.ontrack = (e) => media.addTrack(e.track);
  document.getElementById("out").srcObject = media;
  const client = new interop.WhipWhepViewer();
  await client.view(pc, url);
  window.whep = client;
};
window.publishEyevinn = async (url, token) => {
  const client = new interop.EyevinnPublisher({ endpoint: url, opts: { iceServers: [], authkey: token } });
  await client.ingest(await camera());
  window.eyevinnWhip = client;
};
window.viewEyevinn = async (url) => {
  const player = new interop.EyevinnPlayer({ video: document.getElementById("out"), type: "whep", iceServers: [] });
  await player.load(new URL(url));
  window.eyevinnPlayer = player;
};
window.playing = () => { const v = document.getElementById("out"); return [v.currentTime, v.videoWidth]; };
</script>
"""


@contextlib.contextmanager
def studio_site(tmp_path, edge_url: str | None = None):
    """The tenant's own site: a page and the bundled clients, on another loopback port.
    With `edge_url`, the site also passes /whip/ and /whep/ through to the edge, so the
    clients talk to their own origin (same-origin, as behind a site's reverse proxy)."""
    assert BUNDLE.exists(), "player/test-dist/interop.js is built by make test (cd player && node build.mjs)"
    (tmp_path / "index.html").write_text(STUDIO)
    (tmp_path / "interop.js").write_bytes(BUNDLE.read_bytes())
    handler = functools.partial(_QuietHandler, directory=str(tmp_path), edge_url=edge_url)
    port = free_port()
    site = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        site.shutdown()
        site.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    _PASSED = ("/whip/", "/whep/")
    _HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}

    def __init__(self, *args, edge_url: str | None = None, **kwargs) -> None:
        self.edge_url = edge_url
        super().__init__(*args, **kwargs)

    def log_message(self, *args) -> None:  # no access log, here either
        pass

    def _pass_through(self) -> bool:
        if not self.edge_url or not self.path.startswith(self._PASSED):
            return False
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in self._HOP}
        headers["x-forwarded-for"] = self.client_address[0]
        with httpx.Client(base_url=self.edge_url, timeout=30) as edge:
            answer = edge.request(self.command, self.path, content=body, headers=headers)
        self.send_response(answer.status_code)
        for key, value in answer.headers.items():
            if key.lower() not in self._HOP:
                self.send_header(key, value)
        self.send_header("content-length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)
        return True

    def do_GET(self) -> None:
        if not self._pass_through():
            super().do_GET()

    def do_POST(self) -> None:
        if not self._pass_through():
            self.send_error(405)

    do_PATCH = do_DELETE = do_OPTIONS = do_POST


def _stream(server, origins):
    from core.tenants import create_tenant

    _, key = create_tenant(server.edge.store, "studio", ip_mode="full", allowed_origins=origins)
    created = server.http.post("/v1/streams", json={"name": "studio"},
                               headers={"authorization": f"Bearer {key}"}).json()
    return created


async def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


async def _page(context, site: str):
    """A fresh tab on the studio site, the clients loaded."""
    page = await context.new_page()
    await page.goto(f"{site}/index.html")
    return page


async def _studio_on_air(server, context, site: str, stream: dict):
    """A studio tab publishing the fake camera with whip-whep, once the edge has its
    media: (the tab, the edge's publish session)."""
    studio = await _page(context, site)
    await studio.evaluate("([u, t]) => publishWhipWhep(u, t)", [stream["whip_url"], stream["publish_token"]])
    sid = stream["stream_id"]
    session = await _wait(lambda: server.edge.live.publisher(sid), 10, "a publisher")
    await _wait(lambda: session.media_seen and session.idle_s() < 0.3, 15, "media from the browser")
    return studio, session


async def _plays(page, timeout: float = 20.0) -> int:
    first = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current, width = await page.evaluate("playing()")
        if first is None and current > 0:
            first = current
        if first is not None and current > first + 1.0 and width > 0:
            return width
        await asyncio.sleep(0.1)
    raise AssertionError("the viewer's video did not play")


def test_whip_whep_clients_publish_and_play_from_the_tenants_own_site(server, tmp_path):
    """Cross-origin studio: publish with trickle ICE, play over WHEP, stop (pc closed, then
    DELETE) with every call answered 2xx; the tenant's allowed origin is the studio's."""
    with studio_site(tmp_path) as site:
        stream = _stream(server, (site,))
        sid = stream["stream_id"]

        async def scenario():
            async with chromium(extra_args=FAKE_MEDIA) as (context, errors):
                studio, session = await _studio_on_air(server, context, site, stream)
                async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
                    await _wait_segments(http, sid, 2, timeout=15)

                viewer = await _page(context, site)
                await viewer.evaluate("(u) => viewWhipWhep(u)", stream["whep_url"])
                width = await _plays(viewer)
                assert len(server.edge.live.get(sid).viewers) == 1

                await viewer.evaluate("whep.stop()")
                await studio.evaluate("whip.stop()")
                await _wait(lambda: sid not in server.edge.live.publishers(), 10, "the publish to end")
                await asyncio.sleep(0.5)  # the DELETE after the close
                calls = await studio.evaluate("calls") + await viewer.evaluate("calls")
                return width, calls, errors

        width, calls, errors = asyncio.run(scenario())
    assert width > 0
    methods = {(method, status) for method, _, status, _ in calls}
    assert ("POST", 201) in methods
    assert ("PATCH", 204) in methods, calls  # whip-whep trickled its candidates
    assert ("DELETE", 200) in methods, calls
    assert all(isinstance(status, int) and status < 300 for _, _, status, _ in calls), calls
    assert not errors, errors


def test_a_studio_on_a_site_the_tenant_does_not_list_cannot_publish(server, tmp_path):
    with studio_site(tmp_path) as site:
        stream = _stream(server, ("https://studio.example",))

        async def scenario():
            async with chromium(extra_args=FAKE_MEDIA) as (context, _errors):
                page = await _page(context, site)
                failure = await page.evaluate(
                    "([u, t]) => publishWhipWhep(u, t).then(() => null, (e) => String(e))",
                    [stream["whip_url"], stream["publish_token"]])
                return failure, await page.evaluate("calls")

        failure, calls = asyncio.run(scenario())
    assert failure and "fetch" in failure.lower(), failure
    assert calls[0][2] == "blocked"
    assert stream["stream_id"] not in server.edge.live.publishers()


def test_eyevinn_clients_publish_and_play(server, tmp_path):
    """@eyevinn/whip-web-client (OPTIONS probe, no trickle: waits for gathering) and
    @eyevinn/webrtc-player (WHEP without trickle)."""
    with studio_site(tmp_path) as site:
        stream = _stream(server, (site,))
        sid = stream["stream_id"]

        async def scenario():
            async with chromium(extra_args=FAKE_MEDIA) as (context, errors):
                studio = await _page(context, site)
                failure = await studio.evaluate("([u, t]) => publishEyevinn(u, t).then(() => null, (e) => String(e))",
                                                [stream["whip_url"], stream["publish_token"]])
                assert failure is None, (failure, await studio.evaluate("calls"), errors)
                session = await _wait(lambda: server.edge.live.publisher(sid), 10, "a publisher")
                await _wait(lambda: session.idle_s() < 0.3, 15, "media from the browser")
                viewer = await _page(context, site)
                await viewer.evaluate("(u) => viewEyevinn(u)", stream["whep_url"])
                width = await _plays(viewer)
                await studio.evaluate("eyevinnWhip.destroy()")
                await _wait(lambda: sid not in server.edge.live.publishers(), 10, "the publish to end")
                await asyncio.sleep(0.5)
                calls = await studio.evaluate("calls") + await viewer.evaluate("calls")
                return width, calls, errors

        width, calls, errors = asyncio.run(scenario())
    assert width > 0
    assert all(isinstance(status, int) and status < 300 for _, _, status, _ in calls), calls
    assert not errors, errors


def test_a_crashed_browser_studio_is_back_on_air_within_two_seconds(server, tmp_path):
    """The studio's renderer dies (no DELETE, no close); the reloaded studio publishes again
    at once: 409 + Retry-After until the old session has been silent for 1 s, then 201."""
    with studio_site(tmp_path) as site:
        stream = _stream(server, (site,))
        sid = stream["stream_id"]

        async def scenario():
            async with chromium(extra_args=FAKE_MEDIA) as (context, _errors):
                studio, old = await _studio_on_air(server, context, site, stream)
                with contextlib.suppress(Exception):
                    await studio.goto("chrome://crash", timeout=3000)
                crashed_at = time.monotonic()
                again = await _page(context, site)
                while True:
                    failure = await again.evaluate(
                        "([u, t]) => publishWhipWhep(u, t).then(() => null, (e) => String(e))",
                        [stream["whip_url"], stream["publish_token"]])
                    if failure is None:
                        break
                    assert "409" in failure, failure
                    assert time.monotonic() - crashed_at < 5
                    await again.evaluate("whipPc.close()")
                    await asyncio.sleep(0.2)
                new = await _wait(lambda: (s := server.edge.live.publisher(sid)) is not old and s, 5, "the new publish")
                await _wait(lambda: new.idle_s() < 0.3, 10, "media from the new publish")
                return time.monotonic() - crashed_at, old

        back, old = asyncio.run(scenario())
    assert old.ended
    assert back < 2.0 + 1.0  # on air (media flowing) within 2 s of the crash, plus ICE/DTLS set-up


def test_whip_whep_restart_gets_422_and_a_new_publish_recovers(server, tmp_path):
    """whip-whep's ICE restart: the edge answers 422 as RFC 9725 §4.3.1 prescribes for a
    server that trickles but cannot restart; the client stops and publishes anew."""
    with studio_site(tmp_path) as site:
        stream = _stream(server, (site,))
        sid = stream["stream_id"]

        async def scenario():
            async with chromium(extra_args=FAKE_MEDIA) as (context, _errors):
                studio = await _page(context, site)
                await studio.evaluate("([u, t]) => publishWhipWhep(u, t)", [stream["whip_url"], stream["publish_token"]])
                first = await _wait(lambda: server.edge.live.publisher(sid), 10, "a publisher")
                await _wait(lambda: first.idle_s() < 0.3, 15, "media")
                restart = await studio.evaluate("whip.restart().then(() => 'ok', (e) => String(e))")
                await studio.evaluate("whip.stop()")
                await _wait(lambda: sid not in server.edge.live.publishers(), 10, "the old publish to end")
                await studio.evaluate("([u, t]) => publishWhipWhep(u, t)", [stream["whip_url"], stream["publish_token"]])
                second = await _wait(lambda: server.edge.live.publisher(sid), 10, "the new publish")
                await _wait(lambda: second.idle_s() < 0.3, 15, "media again")
                return restart, await studio.evaluate("calls"), first, second

        restart, calls, first, second = asyncio.run(scenario())
    assert "422" in restart, restart
    assert any(c[0] == "PATCH" and c[2] == 422 for c in calls), calls
    assert first is not second and first.ended


def test_a_browser_sending_mdns_candidates_plays(server, tmp_path):
    """Real browsers hide their addresses behind `.local` names in ICE candidates (unless
    the page holds camera permission, as a studio does): a WHEP viewer's are. The edge
    resolves them through aioice or, where multicast DNS does not answer, connects from the
    browser's own checks (a peer-reflexive candidate), as RFC 8838 intends."""
    with studio_site(tmp_path) as site:
        stream = _stream(server, (site,))
        sid = stream["stream_id"]

        async def scenario():
            async with chromium(extra_args=FAKE_MEDIA) as (context, _):
                studio, session = await _studio_on_air(server, context, site, stream)
                async with chromium(mdns=True) as (viewers, errors):
                    viewer = await _page(viewers, site)
                    await viewer.evaluate("(u) => viewWhipWhep(u)", stream["whep_url"])
                    width = await _plays(viewer)
                    calls = await viewer.evaluate("calls")
                    await viewer.evaluate("whep.stop()")
                await studio.evaluate("whip.stop()")
                return width, calls, errors

        width, calls, errors = asyncio.run(scenario())
    trickled = [c for c in calls if c[0] == "PATCH"]
    assert trickled and all(c[2] == 204 for c in trickled if c[2] is not None), trickled
    assert any(".local " in c[3] for c in trickled), f"Chromium sent no mDNS candidate: {trickled}"
    assert width > 0
    assert not errors, errors


SIMULCAST = """async ([u, t, encodings]) => {
  const stream = await camera();
  const pc = new RTCPeerConnection({ iceServers: [] });
  pc.addTransceiver(stream.getVideoTracks()[0], { direction: "sendonly", sendEncodings: encodings });
  const client = new interop.WhipWhepPublisher();
  window.whip = client;
  window.whipPc = pc;
  await client.publish(pc, u, t);
}"""


def test_a_simulcast_publish_keeps_its_largest_layer(server, tmp_path):
    """Three layers offered smallest first (q, h, f): aiortc takes one, and a browser whose
    simulcast is refused keeps the first (a quarter-size picture); the edge accepts the
    full-size layer alone instead."""
    from tests.media import decode_fmp4

    encodings = [{"rid": "q", "scaleResolutionDownBy": 4}, {"rid": "h", "scaleResolutionDownBy": 2}, {"rid": "f"}]
    with studio_site(tmp_path) as site:
        stream = _stream(server, (site,))
        sid = stream["stream_id"]

        async def scenario():
            async with chromium(extra_args=FAKE_MEDIA) as (context, errors):
                studio = await _page(context, site)
                await studio.evaluate(SIMULCAST, [stream["whip_url"], stream["publish_token"], encodings])
                await _wait(lambda: server.edge.live.publisher(sid), 10, "a publisher")
                async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
                    _, segments = await _wait_segments(http, sid, 2, timeout=15)
                    init = (await http.get(f"/live/{sid}/init.mp4")).content
                    last = (await http.get(f"/live/{sid}/{segments[-1]}")).content
                kept = await studio.evaluate("whipPc.getSenders()[0].getParameters().encodings.map(e => e.rid)")
                await studio.evaluate("whip.stop()")
                return decode_fmp4(init, last)[0], kept, errors

        frames, kept, errors = asyncio.run(scenario())
    assert kept == ["f"]
    assert frames and frames[-1].width > 160  # not the quarter-size layer (160x120)
    assert not errors, errors


def test_whip_whep_clients_same_origin(server, tmp_path):
    """The same clients on the edge's own origin (the site passes /whip/ and /whep/ to the
    edge): publish with trickle, play, stop, all answered 2xx, no CORS involved."""
    with studio_site(tmp_path, edge_url=server.base_url) as site:
        stream = _stream(server, ("https://elsewhere.example",))  # CORS would refuse: none is needed
        sid = stream["stream_id"]
        whip_url = f"{site}/whip/{sid}"
        whep_url = f"{site}/whep/{sid}"

        async def scenario():
            async with chromium(extra_args=FAKE_MEDIA) as (context, errors):
                studio = await _page(context, site)
                await studio.evaluate("([u, t]) => publishWhipWhep(u, t)", [whip_url, stream["publish_token"]])
                session = await _wait(lambda: server.edge.live.publisher(sid), 10, "a publisher")
                await _wait(lambda: session.idle_s() < 0.3, 15, "media from the browser")
                viewer = await _page(context, site)
                await viewer.evaluate("(u) => viewWhipWhep(u)", whep_url)
                width = await _plays(viewer)
                await viewer.evaluate("whep.stop()")
                await studio.evaluate("whip.stop()")
                await _wait(lambda: sid not in server.edge.live.publishers(), 10, "the publish to end")
                await asyncio.sleep(0.5)
                return width, await studio.evaluate("calls") + await viewer.evaluate("calls"), errors

        width, calls, errors = asyncio.run(scenario())
    assert width > 0
    assert all(c[1].startswith(site) for c in calls), calls
    assert ("PATCH", 204) in {(c[0], c[2]) for c in calls}
    assert all(isinstance(c[2], int) and c[2] < 300 for c in calls), calls
    assert not errors, errors

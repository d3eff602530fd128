// Getting pictures into the <video>: HLS (hls.js over MSE, or the browser's own HLS) and,
// for live streams, WHEP over WebRTC for low latency, falling back to HLS when it fails.

import Hls from "hls.js";
import { hlsConfig, keepUp } from "./live.js";

/**
 * Attach an HLS URL. hls.js wherever MSE exists (it also runs the ABR and reports
 * renditions); native HLS only where MSE is missing (iPhone Safari), since some browsers
 * answer "maybe" to canPlayType for HLS without really playing it. Live streams play in
 * hls.js's low-latency mode (LL-HLS) unless `lowLatency` is false (live.js).
 * @returns {{destroy: () => void}}
 */
export function attachHls(video, url, { live, lowLatency = true, onRendition, onError }) {
  if (Hls.isSupported()) {
    const hls = new Hls(hlsConfig({ live, lowLatency }));
    const stopKeepingUp = live ? keepUp(hls, video) : () => {};
    let recoveries = 0;
    hls.on(Hls.Events.LEVEL_SWITCHED, (_, data) => {
      const level = hls.levels[data.level];
      if (level) onRendition({ bitrateKbps: level.bitrate / 1000, width: level.width, height: level.height });
    });
    hls.on(Hls.Events.ERROR, (_, data) => {
      let fatal = data.fatal;
      if (fatal && data.type === Hls.ErrorTypes.MEDIA_ERROR && recoveries < 2) {
        recoveries += 1;
        hls.recoverMediaError();
        fatal = false;
      }
      onError({ code: `hls_${data.details}`, message: data.error ? String(data.error.message || data.error) : data.type, fatal });
      if (fatal) {
        stopKeepingUp();
        hls.destroy();
      }
    });
    hls.loadSource(url);
    hls.attachMedia(video);
    return {
      destroy: () => {
        stopKeepingUp();
        hls.destroy();
      },
      // Seconds behind the live edge, and the target (PART-HOLD-BACK in low-latency mode).
      latency: () => ({ latency: hls.latency, target: hls.targetLatency }),
    };
  }
  if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = url;
    const resize = () => onRendition({ bitrateKbps: 0, width: video.videoWidth, height: video.videoHeight });
    video.addEventListener("resize", resize);
    return {
      destroy: () => {
        video.removeEventListener("resize", resize);
        video.removeAttribute("src");
        video.load();
      },
    };
  }
  onError({ code: "hls_unsupported", message: "this browser plays neither MSE nor HLS", fatal: true });
  return { destroy: () => {} };
}

function gathered(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState === "complete") resolve();
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, timeoutMs);
  });
}

function connected(pc, timeoutMs) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("WebRTC did not connect in time")), timeoutMs);
    const check = () => {
      if (pc.connectionState === "connected") {
        clearTimeout(timer);
        resolve();
      } else if (pc.connectionState === "failed" || pc.connectionState === "closed") {
        clearTimeout(timer);
        reject(new Error(`WebRTC ${pc.connectionState}`));
      }
    };
    pc.addEventListener("connectionstatechange", check);
    check();
  });
}

/**
 * Play a live stream over WHEP (one offer, one answer; no trickle). Rejects if the edge
 * refuses or the connection does not come up within `timeoutMs`, so the caller can fall
 * back to HLS.
 * @returns {Promise<{destroy: () => void}>}
 */
export async function attachWhep(video, url, { timeoutMs = 6_000, onEnded = null, viewerId = null } = {}) {
  if (typeof RTCPeerConnection !== "function") throw new Error("no WebRTC in this browser");
  const pc = new RTCPeerConnection({ iceServers: [] });
  let location = null;
  let events = null;
  let over = false;
  // The stream went away: told by the edge's events resource (WHEP's server-sent events
  // extension) or seen as the DTLS transport closing. Chromium alone keeps the connection
  // "connected" for seconds on a frozen picture, so neither is left to chance.
  const ended = () => {
    if (over) return;
    over = true;
    if (events) events.close();
    if (onEnded) onEnded();
  };
  const destroy = () => {
    over = true;
    if (events) events.close();
    pc.close();
    if (location) fetch(location, { method: "DELETE", keepalive: true }).catch(() => {});
    if (video.srcObject) video.srcObject = null;
  };
  try {
    const stream = new MediaStream();
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    pc.addEventListener("track", (e) => stream.addTrack(e.track));
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc, 2_000);
    // A consented viewer's id lets the edge link its own measurements of this session
    // (loss, jitter, round trip) to the viewer; without it they are stored anonymously.
    const headers = { "content-type": "application/sdp" };
    if (viewerId) headers["x-wave-viewer"] = viewerId;
    const res = await fetch(url, {
      method: "POST",
      headers,
      body: pc.localDescription.sdp,
    });
    if (res.status !== 201) throw new Error(`WHEP answered ${res.status}`);
    const loc = res.headers.get("location");
    if (loc) location = new URL(loc, url).href;
    await pc.setRemoteDescription({ type: "answer", sdp: await res.text() });
    video.srcObject = stream;
    await connected(pc, timeoutMs);
    for (const receiver of pc.getReceivers()) {
      const dtls = receiver.transport;
      if (dtls) dtls.addEventListener("statechange", () => { if (dtls.state === "closed" || dtls.state === "failed") ended(); });
    }
    const eventsUrl = eventsLink(res.headers.get("link"), url);
    if (eventsUrl) {
      subscribe(eventsUrl).then((source) => {
        if (!source) return;
        if (over) { source.close(); return; }
        events = source;
        events.addEventListener("inactive", ended);
      });
    }
    return { destroy };
  } catch (err) {
    destroy();
    throw err;
  }
}

const SSE_REL = "urn:ietf:params:whep:ext:core:server-sent-events";

/** The events resource a WHEP answer links, if any (RFC 8288 Link header). */
export function eventsLink(header, base) {
  for (const part of (header || "").split(/,\s*(?=<)/)) {
    const m = /^<([^>]*)>(.*)$/.exec(part.trim());
    if (m && /;\s*rel="?([^";]*)"?/.exec(m[2])?.[1] === SSE_REL) return new URL(m[1], base).href;
  }
  return null;
}

async function subscribe(eventsUrl) {
  try {
    const res = await fetch(eventsUrl, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(["active", "inactive"]),
    });
    const loc = res.status === 201 && res.headers.get("location");
    return loc ? new EventSource(new URL(loc, eventsUrl).href) : null;
  } catch {
    return null; // no events: the transport's closing still tells
  }
}

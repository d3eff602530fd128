// Live HLS in hls.js: low-latency mode (LL-HLS parts, blocking playlist reloads), the
// latency readout for the LIVE badge, and catching up when playback fell far behind.

/** Seconds behind the target latency after which the player jumps to the live edge
 * (hls.js's playback-rate catch-up covers the smaller drifts). */
export const CATCH_UP_SEEK_S = 3;
/** The fastest hls.js may play to regain its target latency. */
export const MAX_CATCH_UP_RATE = 1.25;

/**
 * hls.js options for a source. Live with `lowLatency` (the default): LL-HLS, the target
 * latency the edge's PART-HOLD-BACK says, catch-up by playback rate. No
 * `liveSyncDurationCount` then: hls.js would let it override PART-HOLD-BACK.
 * Plain live (`lowLatency` false): whole segments, three target durations behind.
 */
export function hlsConfig({ live, lowLatency = true }) {
  if (live && lowLatency) {
    return { lowLatencyMode: true, maxLiveSyncPlaybackRate: MAX_CATCH_UP_RATE, backBufferLength: 30 };
  }
  return { lowLatencyMode: false, liveSyncDurationCount: 3, backBufferLength: live ? 30 : 90 };
}

/** The distance that calls for a jump to the live edge rather than a faster rate, if any. */
export function catchUpTarget(latency, targetLatency, paused) {
  if (paused || !Number.isFinite(latency) || !Number.isFinite(targetLatency)) return null;
  return latency - targetLatency > CATCH_UP_SEEK_S ? latency - targetLatency : null;
}

/**
 * Watch a live hls.js instance: when playback is more than CATCH_UP_SEEK_S behind its
 * target (after a stall, a background tab), seek to hls.js's live sync position.
 * @returns {() => void} stops watching
 */
export function keepUp(hls, video, intervalMs = 1000) {
  const timer = setInterval(() => {
    if (catchUpTarget(hls.latency, hls.targetLatency, video.paused) === null) return;
    const position = hls.liveSyncPosition;
    if (Number.isFinite(position) && position > video.currentTime) video.currentTime = position;
  }, intervalMs);
  return () => clearInterval(timer);
}

/** The LIVE badge's text: "LIVE", and how far behind the live edge when known. */
export function liveLabel(latency) {
  return Number.isFinite(latency) && latency > 0 ? `LIVE · ${latency.toFixed(1)} s` : "LIVE";
}

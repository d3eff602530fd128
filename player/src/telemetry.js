// The QoE state machine: turns what the <video> element does into the contract's events.
//
// It knows nothing of the DOM or the network, so node's test runner drives it with a fake
// clock. The meanings are DESIGN.md §4's: startup time runs from `viewstart` (play intent)
// to the first `playing`; a stall is a rebuffer only while playing, never one caused by a
// seek (a seek's stall lasts until playback resumes); `heartbeat` every 10 s of playing.

export const HEARTBEAT_MS = 10_000;

export class ViewTracker {
  /**
   * @param {object} o
   * @param {string} o.videoId   the media id (video or stream) every event names
   * @param {(event: object) => void} o.emit  receives each event, ready to send
   * @param {() => object} o.sample  position and sizes at the moment of an event
   * @param {() => number} [o.now]   epoch ms
   * @param {{setInterval: Function, clearInterval: Function}} [o.timers]
   * @param {() => string} [o.newId] a fresh view id
   */
  constructor({ videoId, emit, sample, now = Date.now, timers = globalThis, newId = randomId }) {
    this.videoId = videoId;
    this.emitEvent = emit;
    this.sample = sample;
    this.now = now;
    this.timers = timers;
    this.newId = newId;
    this.viewId = null;
    // idle | starting | playing | paused | seeking | rebuffering | ended
    this.state = "idle";
    this.heartbeat = null;
    this.current = null; // the rendition playing: {bitrate_kbps, rendition_w, rendition_h}
  }

  /** Play intent: a new view starts unless one is under way. */
  loadIntent() {
    if (this.viewId !== null) return;
    this.viewId = this.newId();
    this.state = "starting";
    this.emit("viewstart");
    if (this.current) this.emit("rendition_change", this.current);
  }

  /** The playhead moves (first frame, after a pause, a seek or a stall). */
  playing() {
    if (this.viewId === null) this.loadIntent();
    if (this.state === "playing") return;
    if (this.state === "rebuffering") this.emit("rebuffer_end");
    else this.emit("playing");
    this.state = "playing";
    this.startHeartbeat();
  }

  pause() {
    if (this.viewId === null || this.state === "paused" || this.state === "ended") return;
    if (this.state === "rebuffering") this.emit("rebuffer_end");
    this.stopHeartbeat();
    this.state = "paused";
    this.emit("pause");
  }

  /** The element waits for data: a rebuffer only if it was playing (not starting, not seeking). */
  waiting() {
    if (this.state !== "playing") return;
    this.stopHeartbeat();
    this.state = "rebuffering";
    this.emit("rebuffer_start");
  }

  seeking() {
    if (this.viewId === null || this.state === "ended") return;
    if (this.state === "rebuffering") this.emit("rebuffer_end");
    this.stopHeartbeat();
    this.resumeState = this.state === "paused" ? "paused" : "seeking";
    this.state = "seeking";
    this.emit("seeking");
  }

  /** The seek landed; any stall until `playing` still belongs to the seek. */
  seeked() {
    if (this.state !== "seeking") return;
    this.emit("seeked");
    if (this.resumeState === "paused") this.state = "paused";
  }

  /**
   * The player switched renditions (hls.js LEVEL_SWITCHED). Remembered even before a view
   * starts (a VOD's first rendition is chosen before the click), and repeated right after
   * each `viewstart`: the dashboard's average bitrate and upscale % bill every span of a
   * view to the rendition in effect, so every view must say which one it starts on.
   */
  rendition({ bitrateKbps, width, height }) {
    this.current = {
      bitrate_kbps: Math.max(0, Math.round(bitrateKbps || 0)),
      rendition_w: width || undefined,
      rendition_h: height || undefined,
    };
    if (this.viewId === null) return;
    this.emit("rendition_change", this.current);
  }

  error({ code, message, fatal }) {
    if (this.viewId === null) this.loadIntent();
    this.emit("error", {
      error_code: clip(code || "unknown", 128),
      error_message: message ? clip(message, 1024) : undefined,
      fatal: Boolean(fatal),
    });
    if (fatal) this.finish();
  }

  ended() {
    if (this.viewId === null || this.state === "ended") return;
    if (this.state === "rebuffering") this.emit("rebuffer_end");
    this.emit("ended");
    this.finish();
  }

  /** The page goes away: the view ends here unless it already ended. */
  pageHide() {
    if (this.viewId === null) return;
    if (this.state === "rebuffering") this.emit("rebuffer_end");
    this.emit("viewend");
    this.finish();
  }

  finish() {
    this.stopHeartbeat();
    this.viewId = null;
    this.state = "ended";
  }

  startHeartbeat() {
    this.stopHeartbeat();
    this.heartbeat = this.timers.setInterval(() => this.emit("heartbeat"), HEARTBEAT_MS);
  }

  stopHeartbeat() {
    if (this.heartbeat !== null) this.timers.clearInterval(this.heartbeat);
    this.heartbeat = null;
  }

  emit(type, extra = {}) {
    const event = { type, ts: this.now(), view_id: this.viewId, video_id: this.videoId };
    const sampled = this.sample();
    for (const [k, v] of Object.entries({ ...sampled, ...extra })) {
      if (v !== undefined && v !== null) event[k] = v;
    }
    this.emitEvent(event);
  }
}

export function randomId() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  const bytes = new Uint8Array(16);
  c.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * At most `n` characters, counted as the edge counts them (code points), never half of
 * one, and no lone surrogate: `.slice` on UTF-16 units could cut an emoji in two, and the
 * edge refuses the whole batch (every event in it lost) for one half of a pair.
 */
export function clip(text, n) {
  let s = String(text);
  s = typeof s.toWellFormed === "function"
    ? s.toWellFormed()
    : s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, "\uFFFD");
  return Array.from(s).slice(0, n).join("");
}

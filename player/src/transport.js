// Beacon batching and delivery. Never in playback's way: sends are fire-and-forget
// promises whose failures are caught here, retried with backoff, and never thrown.
//
// Events wait in memory only. Until the viewer has answered the consent prompt the batcher
// is `held`: nothing leaves the page; a decline or a withdrawal drops what waits.

export const MAX_EVENTS = 50;
export const MAX_DELAY_MS = 10_000;
const MAX_QUEUE = 1_000; // a viewer offline for hours must not grow the page without bound
const BACKOFF_MS = [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 60_000];

/** Statuses worth retrying: the edge is away, overloaded or shedding load. */
export function retryable(status) {
  return status === 0 || status === 408 || status === 429 || status >= 500;
}

export class Batcher {
  /**
   * @param {object} o
   * @param {(body: string, opts: {keepalive: boolean}) => Promise<number>} o.post
   *   sends one batch, resolves to the HTTP status (0 for a network failure)
   * @param {(body: string) => boolean} [o.beacon]  navigator.sendBeacon, for pagehide
   * @param {() => object} o.envelope  {tenant_id, viewer_id, viewer_email?} of the moment
   * @param {{setTimeout: Function, clearTimeout: Function}} [o.timers]
   */
  constructor({ post, beacon = null, envelope, timers = globalThis }) {
    this.post = post;
    this.beacon = beacon;
    this.envelope = envelope;
    this.timers = timers;
    this.queue = [];
    this.timer = null;
    this.held = true;
    this.stopped = false;
    this.sending = false;
    this.failures = 0;
    this.dropped = 0;
  }

  push(event) {
    if (this.stopped) return;
    this.queue.push(event);
    if (this.queue.length > MAX_QUEUE) this.dropped += this.queue.splice(0, this.queue.length - MAX_QUEUE).length;
    if (this.held) return;
    if (this.queue.length >= MAX_EVENTS && !this.sending && this.failures === 0) this.flush();
    else this.schedule(MAX_DELAY_MS);
  }

  /** Consent given (also after a decline or withdrawal): what waits goes out now. */
  release() {
    this.stopped = false;
    this.held = false;
    if (this.queue.length) this.flush();
  }

  /** Consent refused or withdrawn: drop everything, send nothing more. */
  stop() {
    this.stopped = true;
    this.queue = [];
    this.clearTimer();
  }

  schedule(ms) {
    if (this.timer === null) this.timer = this.timers.setTimeout(() => { this.timer = null; this.flush(); }, ms);
  }

  clearTimer() {
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    this.timer = null;
  }

  body(events) {
    return JSON.stringify({ ...this.envelope(), events });
  }

  /** Send what waits, a batch of at most MAX_EVENTS at a time. */
  async flush() {
    if (this.held || this.stopped || this.sending || !this.queue.length) return;
    this.clearTimer();
    this.sending = true;
    try {
      while (this.queue.length && !this.stopped) {
        // Out of the queue while in flight, so a pagehide flush never sends it twice.
        const batch = this.queue.splice(0, MAX_EVENTS);
        let status = 0;
        try {
          status = await this.post(this.body(batch), { keepalive: true });
        } catch {
          status = 0;
        }
        if (this.stopped) return;
        if (status >= 200 && status < 300) {
          this.failures = 0;
          continue;
        }
        if (retryable(status)) {
          this.queue.unshift(...batch);
          this.schedule(BACKOFF_MS[Math.min(this.failures, BACKOFF_MS.length - 1)]);
          this.failures += 1;
          return;
        }
        // Refused for good (a 4xx: consent gone, malformed): retrying cannot help.
        this.dropped += batch.length;
        if (status === 403) this.stop();
      }
    } finally {
      this.sending = false;
    }
  }

  /** The page is going away: hand everything to sendBeacon (fetch keepalive if refused). */
  flushOnHide() {
    if (this.held || this.stopped || !this.queue.length) return;
    this.clearTimer();
    const events = this.queue.splice(0);
    for (let i = 0; i < events.length; i += MAX_EVENTS) {
      const body = this.body(events.slice(i, i + MAX_EVENTS));
      let queued = false;
      try {
        queued = this.beacon ? this.beacon(body) : false;
      } catch {
        queued = false;
      }
      if (!queued) this.post(body, { keepalive: true }).catch(() => {});
    }
  }
}

// Is an element really in front of the viewer? A page that frames the player can make the
// frame transparent or cover it, and put a button of its own over "Accept" (clickjacking):
// the viewer's click would then be a consent they never saw. IntersectionObserver v2
// (Chromium) says whether an element was visible, its frame's ancestors included:
// opacity, transforms, filters, anything painted over it. Where a browser lacks it, the
// embed page's frame-ancestors (the tenant's origins, when it lists them) is the guard.

// A click may come before the observer's first report (it samples every 100 ms, and a busy
// machine paints late): then the first report decides, however late, up to this long.
const FIRST_REPORT_MS = 3_000;
const KEPT = 16;

/**
 * @param {Element} target
 * @returns {{at: (t: number) => boolean | null, check: (t: number) => Promise<boolean>, stop: () => void}}
 *   `at(t)`: whether the target was visible at time `t` (an event's timeStamp), by the last
 *   report sampled at or before it; null if none was. `check(t)`: the same, or else the
 *   first report, waited for. No report at all: not visible.
 */
export function watchVisibility(target, { IO = globalThis.IntersectionObserver,
  Entry = globalThis.IntersectionObserverEntry, timers = globalThis } = {}) {
  if (typeof IO !== "function" || !Entry || !("isVisible" in Entry.prototype)) {
    return { at: () => true, check: async () => true, stop() {} };
  }
  const reports = []; // [time, visible], oldest first
  const waiting = [];
  const io = new IO((entries) => {
    for (const entry of entries) reports.push([entry.time, entry.isVisible]);
    reports.splice(0, Math.max(0, reports.length - KEPT));
    for (const resolve of waiting.splice(0)) resolve();
  }, { trackVisibility: true, delay: 100 });
  io.observe(target);
  const at = (t) => {
    let seen = null;
    for (const [time, visible] of reports) if (time <= t) seen = visible;
    return seen;
  };
  return {
    at,
    async check(t) {
      const seen = at(t);
      if (seen !== null) return seen;
      if (!reports.length) {
        await new Promise((resolve) => { waiting.push(resolve); timers.setTimeout(resolve, FIRST_REPORT_MS); });
      }
      return reports.length ? reports[0][1] : false;
    },
    stop() { io.disconnect(); },
  };
}

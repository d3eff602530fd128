import assert from "node:assert/strict";
import { test } from "node:test";

import { CATCH_UP_SEEK_S, MAX_CATCH_UP_RATE, catchUpTarget, hlsConfig, liveLabel } from "../src/live.js";

test("live streams use hls.js low-latency mode with rate catch-up, and nothing that overrides PART-HOLD-BACK", () => {
  const ll = hlsConfig({ live: true });
  assert.equal(ll.lowLatencyMode, true);
  assert.ok(ll.maxLiveSyncPlaybackRate > 1 && ll.maxLiveSyncPlaybackRate <= 1.5);
  assert.equal(ll.maxLiveSyncPlaybackRate, MAX_CATCH_UP_RATE);
  // hls.js takes liveSyncDuration(Count) over PART-HOLD-BACK when the user config sets one
  assert.ok(!("liveSyncDurationCount" in ll) && !("liveSyncDuration" in ll));
});

test("plain live HLS and VOD stay on whole segments", () => {
  assert.deepEqual(hlsConfig({ live: true, lowLatency: false }),
    { lowLatencyMode: false, liveSyncDurationCount: 3, backBufferLength: 30 });
  assert.equal(hlsConfig({ live: false }).lowLatencyMode, false);
  assert.equal(hlsConfig({ live: false }).backBufferLength, 90);
});

test("far behind the target latency means a jump to the live edge; near it, or paused, does not", () => {
  assert.equal(catchUpTarget(1.2, 0.9, false), null);
  assert.ok(Math.abs(catchUpTarget(1 + CATCH_UP_SEEK_S + 0.5, 1, false) - (CATCH_UP_SEEK_S + 0.5)) < 1e-9);
  assert.equal(catchUpTarget(10, 0.9, true), null);
  assert.equal(catchUpTarget(NaN, 0.9, false), null);
  assert.equal(catchUpTarget(10, null, false), null);
});

test("the LIVE badge shows the latency once hls.js knows it", () => {
  assert.equal(liveLabel(null), "LIVE");
  assert.equal(liveLabel(0), "LIVE");
  assert.equal(liveLabel(1.234), "LIVE · 1.2 s");
});

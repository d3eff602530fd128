import assert from "node:assert/strict";
import { test } from "node:test";

import { HEARTBEAT_MS, ViewTracker } from "../src/telemetry.js";
import { FakeTimers } from "./fake.js";

function tracker() {
  const timers = new FakeTimers();
  const events = [];
  let position = 0;
  let n = 0;
  const t = new ViewTracker({
    videoId: "vd_1",
    emit: (e) => events.push(e),
    sample: () => ({ position_ms: position, screen_w: 1280, screen_h: 720, player_w: 640, player_h: 360 }),
    now: timers.now,
    timers,
    newId: () => `view-${++n}`,
  });
  return { t, timers, events, types: () => events.map((e) => e.type), at: (ms) => { position = ms; } };
}

test("a view: viewstart, startup, playing, pause, ended, each with position and sizes", () => {
  const { t, timers, events, types } = tracker();
  t.loadIntent();
  timers.advance(1200);
  t.playing();
  timers.advance(3000);
  t.pause();
  t.playing();
  t.ended();
  assert.deepEqual(types(), ["viewstart", "playing", "pause", "playing", "ended"]);
  assert.equal(events[1].ts - events[0].ts, 1200, "startup time is viewstart -> first playing");
  for (const e of events) {
    assert.equal(e.view_id, "view-1");
    assert.equal(e.video_id, "vd_1");
    assert.equal(e.screen_w, 1280);
    assert.equal(e.player_h, 360);
    assert.ok("position_ms" in e);
  }
});

test("a stall while playing is a rebuffer; a stall before the first frame is startup", () => {
  const { t, timers, types } = tracker();
  t.loadIntent();
  t.waiting(); // still starting: part of startup time, not a rebuffer
  t.playing();
  timers.advance(5000);
  t.waiting();
  timers.advance(3000);
  t.playing();
  assert.deepEqual(types(), ["viewstart", "playing", "rebuffer_start", "rebuffer_end"]);
});

test("the stall of a seek is not a rebuffer, even when it lasts past seeked", () => {
  const { t, types } = tracker();
  t.loadIntent();
  t.playing();
  t.seeking();
  t.waiting();
  t.seeked();
  t.waiting();
  t.playing();
  assert.deepEqual(types(), ["viewstart", "playing", "seeking", "seeked", "playing"]);
  assert.ok(!types().includes("rebuffer_start"));
});

test("a seek during a rebuffer ends the rebuffer first", () => {
  const { t, types } = tracker();
  t.loadIntent();
  t.playing();
  t.waiting();
  t.seeking();
  assert.deepEqual(types(), ["viewstart", "playing", "rebuffer_start", "rebuffer_end", "seeking"]);
});

test("a seek while paused stays paused: no rebuffer and no playing", () => {
  const { t, types } = tracker();
  t.loadIntent();
  t.playing();
  t.pause();
  t.seeking();
  t.seeked();
  t.waiting();
  assert.deepEqual(types(), ["viewstart", "playing", "pause", "seeking", "seeked"]);
});

test("heartbeats every 10 s while playing, none while paused or stalled", () => {
  const { t, timers, events, types } = tracker();
  t.loadIntent();
  t.playing();
  timers.advance(HEARTBEAT_MS * 3 + 500);
  assert.equal(types().filter((x) => x === "heartbeat").length, 3);
  const beats = events.filter((e) => e.type === "heartbeat").map((e) => e.ts - events[1].ts);
  assert.deepEqual(beats, [10_000, 20_000, 30_000]);
  t.pause();
  timers.advance(HEARTBEAT_MS * 5);
  t.playing();
  t.waiting();
  timers.advance(HEARTBEAT_MS * 2);
  assert.equal(types().filter((x) => x === "heartbeat").length, 3);
  t.playing();
  timers.advance(HEARTBEAT_MS);
  assert.equal(types().filter((x) => x === "heartbeat").length, 4);
});

test("pagehide ends the view once; a later play is a new view", () => {
  const { t, timers, events, types } = tracker();
  t.loadIntent();
  t.playing();
  t.pageHide();
  t.pageHide();
  timers.advance(HEARTBEAT_MS * 2);
  assert.deepEqual(types(), ["viewstart", "playing", "viewend"]);
  t.playing();
  assert.equal(events.at(-1).view_id, "view-2");
  assert.equal(events.at(-2).type, "viewstart");
});

test("the rendition chosen before the view starts is reported with the view, and again with the next", () => {
  const { t, events, types } = tracker();
  t.rendition({ bitrateKbps: 5716.5, width: 1920, height: 1080 }); // hls.js picked it before the click
  assert.deepEqual(types(), [], "nothing before play intent");
  t.loadIntent();
  t.playing();
  t.rendition({ bitrateKbps: 730, width: 640, height: 360 });
  t.ended();
  t.loadIntent(); // replay: a new view on the rendition now playing
  assert.deepEqual(types(), ["viewstart", "rendition_change", "playing", "rendition_change", "ended", "viewstart",
    "rendition_change"]);
  assert.deepEqual([events[1].rendition_w, events[1].rendition_h, events[1].bitrate_kbps], [1920, 1080, 5717]);
  assert.equal(events[1].view_id, events[0].view_id);
  assert.deepEqual([events[6].rendition_h, events[6].bitrate_kbps, events[6].view_id], [360, 730, "view-2"]);
});

test("a fatal error ends the view; rendition changes carry the bitrate", () => {
  const { t, events, types } = tracker();
  t.loadIntent();
  t.playing();
  t.rendition({ bitrateKbps: 2499.6, width: 1280, height: 720 });
  t.error({ code: "hls_fragLoadError", message: "404", fatal: true });
  t.pageHide();
  assert.deepEqual(types(), ["viewstart", "playing", "rendition_change", "error"]);
  assert.equal(events[2].bitrate_kbps, 2500);
  assert.equal(events[2].rendition_w, 1280);
  assert.equal(events[3].fatal, true);
  assert.equal(events[3].error_code, "hls_fragLoadError");
});

test("an error message cut at its limit never leaves half an emoji (the edge would refuse the batch)", () => {
  const { t, events } = tracker();
  t.loadIntent();
  t.error({ code: "🎬".repeat(200), message: "x".repeat(1023) + "🎬 fragment failed \uD800 lone", fatal: false });
  const e = events.find((x) => x.type === "error");
  assert.equal(Array.from(e.error_message).length, 1024);
  assert.ok(e.error_message.endsWith("x🎬"));
  assert.equal(Array.from(e.error_code).length, 128);
  const json = JSON.stringify(e);
  assert.ok(!/\\ud[89ab][0-9a-f]{2}(?!\\ud[c-f])/i.test(json), "no lone surrogate escape in the JSON sent");
  assert.ok(e.error_code.isWellFormed() && e.error_message.isWellFormed());
});

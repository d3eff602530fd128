import assert from "node:assert/strict";
import { test } from "node:test";

import { Batcher, MAX_DELAY_MS, MAX_EVENTS } from "../src/transport.js";
import { FakeTimers } from "./fake.js";

const tick = () => new Promise((r) => setImmediate(r));

function batcher(statuses = []) {
  const timers = new FakeTimers();
  const posts = [];
  const beacons = [];
  let beaconOk = true;
  const b = new Batcher({
    post: async (body, opts) => {
      posts.push({ ...JSON.parse(body), keepalive: opts.keepalive });
      const s = statuses.length ? statuses.shift() : 202;
      if (s === "throw") throw new TypeError("network down");
      return s;
    },
    beacon: (body) => {
      if (!beaconOk) return false;
      beacons.push(JSON.parse(body));
      return true;
    },
    envelope: () => ({ tenant_id: "tn_1", viewer_id: "v1" }),
    timers,
  });
  return { b, timers, posts, beacons, refuseBeacons: () => { beaconOk = false; } };
}

const ev = (i) => ({ type: "heartbeat", ts: i, view_id: "x", video_id: "y" });

test("nothing leaves before consent; release sends what waited", async () => {
  const { b, timers, posts } = batcher();
  for (let i = 0; i < 3; i++) b.push(ev(i));
  timers.advance(MAX_DELAY_MS * 3);
  await tick();
  assert.equal(posts.length, 0);
  b.release();
  await tick();
  assert.equal(posts.length, 1);
  assert.equal(posts[0].events.length, 3);
  assert.equal(posts[0].tenant_id, "tn_1");
  assert.equal(posts[0].keepalive, true);
});

test("a batch goes at 10 s or at 50 events, whichever comes first", async () => {
  const { b, timers, posts } = batcher();
  b.release();
  b.push(ev(1));
  timers.advance(MAX_DELAY_MS - 1);
  await tick();
  assert.equal(posts.length, 0);
  timers.advance(1);
  await tick();
  assert.equal(posts.length, 1);
  for (let i = 0; i < MAX_EVENTS; i++) b.push(ev(i));
  await tick();
  assert.equal(posts.length, 2);
  assert.equal(posts[1].events.length, MAX_EVENTS);
});

test("failures are retried with backoff and never thrown; events are not lost", async () => {
  const { b, timers, posts } = batcher(["throw", 503, 202]);
  b.release();
  b.push(ev(1));
  timers.advance(MAX_DELAY_MS);
  await tick();
  assert.equal(posts.length, 1);
  timers.advance(999);
  await tick();
  assert.equal(posts.length, 1, "first retry waits 1 s");
  timers.advance(1);
  await tick();
  assert.equal(posts.length, 2);
  timers.advance(1999);
  await tick();
  assert.equal(posts.length, 2, "second retry waits 2 s");
  timers.advance(1);
  await tick();
  assert.equal(posts.length, 3);
  assert.deepEqual(posts.map((p) => p.events.length), [1, 1, 1]);
  assert.equal(b.queue.length, 0);
});

test("a 403 (consent gone) stops sending for good", async () => {
  const { b, timers, posts } = batcher([403]);
  b.release();
  b.push(ev(1));
  timers.advance(MAX_DELAY_MS);
  await tick();
  b.push(ev(2));
  timers.advance(MAX_DELAY_MS * 10);
  await tick();
  assert.equal(posts.length, 1);
});

test("pagehide flushes everything through sendBeacon, in batches of 50, or fetch keepalive", async () => {
  const { b, posts, beacons, refuseBeacons } = batcher();
  for (let i = 0; i < 120; i++) b.push(ev(i));
  b.release(); // the first 50 are in flight by fetch; 70 wait
  b.flushOnHide();
  assert.deepEqual(beacons.map((x) => x.events.length), [50, 20]);
  await tick();
  assert.deepEqual(posts.map((p) => p.events.length), [50], "nothing is sent twice");
  assert.deepEqual([...posts[0].events, ...beacons.flatMap((x) => x.events)].map((e) => e.ts), [...Array(120).keys()]);
  refuseBeacons();
  b.push(ev(999));
  b.flushOnHide();
  await tick();
  assert.equal(posts.at(-1).events[0].ts, 999);
  assert.equal(posts.at(-1).keepalive, true);
});

test("decline drops what waited and anything later", async () => {
  const { b, timers, posts, beacons } = batcher();
  b.push(ev(1));
  b.stop();
  b.push(ev(2));
  b.flushOnHide();
  timers.advance(MAX_DELAY_MS * 2);
  await tick();
  assert.equal(posts.length + beacons.length, 0);
});

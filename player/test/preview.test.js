import assert from "node:assert/strict";
import { test } from "node:test";

import { cueAt, parseStoryboard } from "../src/preview.js";

const VTT = `WEBVTT

00:00:00.000 --> 00:00:02.000
sprite-0.jpg?token=abc#xywh=0,0,160,90

00:00:02.000 --> 00:00:04.000
sprite-0.jpg?token=abc#xywh=160,0,160,90

note: not a picture cue
00:00:04.000 --> 00:00:05.500
captions.txt

00:00:04.000 --> 00:00:05.500
sprite-1.jpg?token=abc#xywh=0,90,160,90
`;

test("a storyboard's cues resolve sprites against the storyboard's URL, token kept", () => {
  const cues = parseStoryboard(VTT, "https://edge.example/vod/vd_1/storyboard.vtt?token=abc");
  assert.equal(cues.length, 3);
  assert.deepEqual(cues[1], {
    start: 2, end: 4, url: "https://edge.example/vod/vd_1/sprite-0.jpg?token=abc", x: 160, y: 0, w: 160, h: 90,
  });
  assert.equal(cues[2].url, "https://edge.example/vod/vd_1/sprite-1.jpg?token=abc");
  assert.equal(cues[2].end, 5.5);
});

test("the cue under a time: its own, the last one at the very end, none before or after", () => {
  const cues = parseStoryboard(VTT, "https://edge.example/vod/vd_1/storyboard.vtt");
  assert.equal(cueAt(cues, 0).x, 0);
  assert.equal(cueAt(cues, 1.99).x, 0);
  assert.equal(cueAt(cues, 2).x, 160);
  assert.equal(cueAt(cues, 5.5).y, 90); // the duration itself: the last picture
  assert.equal(cueAt(cues, -1), null);
  assert.equal(cueAt([], 3), null);
});

test("hostile or broken storyboards give no cues rather than errors", () => {
  assert.deepEqual(parseStoryboard("", "https://e/x.vtt"), []);
  assert.deepEqual(parseStoryboard("WEBVTT\n\nxx --> yy\nsprite-0.jpg#xywh=0,0,1,1\n", "https://e/x.vtt"), []);
  assert.deepEqual(parseStoryboard("WEBVTT\n\n00:01.000 --> 00:02.000\nsprite-0.jpg#xywh=a,b\n", "https://e/x.vtt"), []);
  const short = parseStoryboard("WEBVTT\n\n01:02.500 --> 01:04.000\nhttps://other.example/s.jpg#xywh=1,2,3,4\n", "https://e/x.vtt");
  assert.equal(short[0].start, 62.5);
});

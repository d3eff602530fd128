import assert from "node:assert/strict";
import { test } from "node:test";

import { CONSENT, hostAnswer } from "../src/host.js";

const parent = { name: "parent" };
const allowed = ["https://tenant.example"];
const msg = (data, origin = "https://tenant.example", source = parent) => ({ data, origin, source });

test("an allowed parent's grant is followed, with its viewer id and identity", () => {
  const answer = hostAnswer(
    msg({ type: CONSENT, consent: "granted", viewer_id: "u-42", viewer_email: "ann@example.org", identity_token: "1.ab" }),
    parent, allowed);
  assert.deepEqual(answer, { consent: "granted", viewerId: "u-42", email: "ann@example.org", token: "1.ab" });
});

test("another origin is refused, and no list means no origin may answer", () => {
  const grant = { type: CONSENT, consent: "granted" };
  assert.deepEqual(hostAnswer(msg(grant, "https://evil.example"), parent, allowed), { refused: "https://evil.example" });
  assert.deepEqual(hostAnswer(msg(grant), parent, []), { refused: "https://tenant.example" });
});

test("not the parent, not a consent message, or a bad value: not an answer", () => {
  assert.equal(hostAnswer(msg({ type: CONSENT, consent: "granted" }, allowed[0], { other: 1 }), parent, allowed), null);
  assert.equal(hostAnswer(msg("granted"), parent, allowed), null);
  assert.equal(hostAnswer(msg({ type: "other", consent: "granted" }), parent, allowed), null);
  assert.equal(hostAnswer(msg({ type: CONSENT, consent: "yes" }), parent, allowed), null);
});

test("an e-mail without the host's viewer id is dropped; a malformed viewer id too", () => {
  const answer = hostAnswer(msg({ type: CONSENT, consent: "granted", viewer_id: "<x>", viewer_email: "a@b" }), parent, allowed);
  assert.deepEqual(answer, { consent: "granted", viewerId: null, email: null, token: null });
});

import assert from "node:assert/strict";
import { test } from "node:test";

import { ConsentMemory, envelope, isAnonymous } from "../src/consent.js";

class FakeStorage {
  constructor() {
    this.items = new Map();
  }
  getItem(k) {
    return this.items.has(k) ? this.items.get(k) : null;
  }
  setItem(k, v) {
    this.items.set(k, String(v));
  }
  removeItem(k) {
    this.items.delete(k);
  }
}

test("anonymous mode is the config's say, and its envelope carries no viewer id", () => {
  assert.equal(isAnonymous({ mode: "anonymous" }), true);
  assert.equal(isAnonymous({ mode: "opt-in" }), false);
  assert.equal(isAnonymous({}), false);
  assert.equal(isAnonymous(undefined), false);
  assert.deepEqual(envelope("tn_eu_1", null), { tenant_id: "tn_eu_1" });
  assert.deepEqual(envelope("tn_eu_1", "v-1"), { tenant_id: "tn_eu_1", viewer_id: "v-1" });
});

test("a remembered consent counts only for its policy and from the tenant's valid-from on", () => {
  const storage = new FakeStorage();
  const memory = new ConsentMemory(storage, "tn_eu_1");
  memory.save("v-1", "1", 1_000);
  assert.equal(memory.read("1"), "v-1");
  assert.equal(memory.read("1", 1_000), "v-1");
  assert.equal(memory.read("1", 2_000), null); // the tenant asked again after this grant
  assert.equal(storage.items.size, 0); // and the stale grant is forgotten
  memory.save("v-2", "1", 3_000);
  assert.equal(memory.read("2"), null); // a new policy version asks again
});

test("a grant remembered before grant times were kept counts until the tenant asks again", () => {
  const storage = new FakeStorage();
  storage.setItem("wave.consent.tn_eu_1", JSON.stringify({ viewer_id: "v-1", policy_version: "1" }));
  const memory = new ConsentMemory(storage, "tn_eu_1");
  assert.equal(memory.read("1", 0), "v-1");
  assert.equal(memory.read("1", 5), null);
});

test("without storage nothing is remembered and nothing fails", () => {
  const memory = new ConsentMemory(null, "tn_eu_1");
  memory.save("v-1", "1");
  assert.equal(memory.read("1"), null);
  memory.erase();
});

// Consent, as the viewer gave it: recorded by the edge's ledger, remembered in local storage.
//
// Nothing is written to storage before an accept: a decline leaves no trace (the prompt
// simply comes back on the next visit). A stored consent names the policy version it was
// given for; a new version asks again.

const PREFIX = "wave.consent.";

export class ConsentMemory {
  /** @param {Storage|null} storage  localStorage, or null where the browser refuses it */
  constructor(storage, tenantId) {
    this.storage = storage;
    this.key = PREFIX + tenantId;
  }

  /** The stored viewer id if consent was given for this policy version, else null. */
  read(policyVersion) {
    try {
      const raw = this.storage && this.storage.getItem(this.key);
      if (!raw) return null;
      const saved = JSON.parse(raw);
      if (saved && saved.policy_version === policyVersion && typeof saved.viewer_id === "string") return saved.viewer_id;
      this.erase(); // given for an older policy: ask again
    } catch {
      /* storage unavailable or garbled: behave as if nothing was given */
    }
    return null;
  }

  save(viewerId, policyVersion) {
    try {
      if (this.storage) this.storage.setItem(this.key, JSON.stringify({ viewer_id: viewerId, policy_version: policyVersion }));
    } catch {
      /* storage refused (private mode, sandbox): consent lasts for this page only */
    }
  }

  erase() {
    try {
      if (this.storage) this.storage.removeItem(this.key);
    } catch {
      /* nothing we can do, and nothing was readable either */
    }
  }
}

async function postJson(url, body) {
  // text/plain keeps this a "simple" request: no CORS preflight round trip.
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "text/plain;charset=UTF-8" },
    body: JSON.stringify(body),
    credentials: "omit",
  });
  return res.status;
}

/** Record a grant in the edge's ledger; true only once the edge has it. */
export async function recordGrant(urls, { tenantId, viewerId, policyVersion, email, identityToken }) {
  const body = { tenant_id: tenantId, viewer_id: viewerId, purposes: ["analytics"], policy_version: policyVersion };
  if (email && identityToken) {
    body.viewer_email = email;
    body.identity_token = identityToken;
  }
  try {
    return (await postJson(urls.consent, body)) === 201;
  } catch {
    return false;
  }
}

export async function recordWithdrawal(urls, { tenantId, viewerId }) {
  try {
    return (await postJson(urls.withdraw, { tenant_id: tenantId, viewer_id: viewerId })) === 200;
  } catch {
    return false;
  }
}

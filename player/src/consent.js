// Consent, as the viewer gave it: recorded by the edge's ledger, remembered in local storage.
//
// Nothing is written to storage before an accept: a decline leaves no trace (the prompt
// simply comes back on the next visit). A stored consent names the policy version it was
// given for; a new version asks again.
//
// A tenant in anonymous mode (the playback config's `consent.mode`) asks nothing: the
// player shows no prompt, sends no viewer id, and never touches storage (no localStorage,
// sessionStorage, IndexedDB or cookie); the edge derives a key that lasts one day.

const PREFIX = "wave.consent.";
export const ANONYMOUS = "anonymous";
export const ANONYMOUS_NOTICE =
  "Views of this video are counted anonymously: nothing is stored on your device, no IP address is kept, " +
  "and the count cannot recognise you from one day to the next.";

/** Does the tenant count anonymously (no prompt, no viewer id, no storage)? */
export function isAnonymous(consentConfig) {
  return Boolean(consentConfig) && consentConfig.mode === ANONYMOUS;
}

/** The batch envelope: a viewer id only when there is one (anonymous mode has none). */
export function envelope(tenantId, viewerId) {
  return viewerId ? { tenant_id: tenantId, viewer_id: viewerId } : { tenant_id: tenantId };
}

export class ConsentMemory {
  /** @param {Storage|null} storage  localStorage, or null where the browser refuses it */
  constructor(storage, tenantId) {
    this.storage = storage;
    this.key = PREFIX + tenantId;
  }

  /**
   * The stored viewer id if consent was given for this policy version (and not before
   * `validFromMs`: the tenant came back to opt-in since, and the edge asks again), else null.
   */
  read(policyVersion, validFromMs = 0) {
    try {
      const raw = this.storage && this.storage.getItem(this.key);
      if (!raw) return null;
      const saved = JSON.parse(raw);
      const fresh = Boolean(saved) && (!validFromMs || (typeof saved.granted_at === "number" && saved.granted_at >= validFromMs));
      if (fresh && saved.policy_version === policyVersion && typeof saved.viewer_id === "string") {
        return saved.viewer_id;
      }
      this.erase(); // given for an older policy, or before the tenant asked again
    } catch {
      /* storage unavailable or garbled: behave as if nothing was given */
    }
    return null;
  }

  save(viewerId, policyVersion, grantedAt = Date.now()) {
    try {
      const saved = { viewer_id: viewerId, policy_version: policyVersion, granted_at: grantedAt };
      if (this.storage) this.storage.setItem(this.key, JSON.stringify(saved));
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

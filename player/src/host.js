// The host page's answers to the iframe embed, by postMessage.
//
// Any site can frame /embed/{id} and write its URL, so the iframe player takes nothing
// about the viewer from there. A tenant's page that already asked its visitor (its own
// consent manager, its own sign-in) tells the player from its own code:
//
//   iframe.contentWindow.postMessage({ type: "wave:consent", consent: "granted",
//     viewer_id: "u-42", viewer_email: "ann@example.org", identity_token: "..." }, EDGE_ORIGIN);
//
// and the player believes it only from its direct parent and only if the message's origin
// (set by the browser, not by the sender) is one of the tenant's allowed origins. With no
// allowed origins, no page may answer: the viewer answers in the player.

export const READY = "wave:ready"; // player -> parent, once it can take an answer
export const CONSENT = "wave:consent"; // parent -> player
export const RECORDED = "wave:consent-recorded"; // player -> the answering parent

const VIEWER_ID = /^[A-Za-z0-9._:-]{1,128}$/;

function text(value, max) {
  return typeof value === "string" && value.length > 0 && value.length <= max ? value : null;
}

/**
 * What a message event says, if it is a host's answer the player may follow.
 * @returns {null | {refused: string} | {consent: "granted"|"declined", viewerId, email, token}}
 *   null: not a host answer at all (other scripts' messages, other frames);
 *   refused: a host answer from an origin the tenant does not allow.
 */
export function hostAnswer(event, parent, allowedOrigins) {
  if (!event || !parent || event.source !== parent) return null;
  const data = event.data;
  if (!data || typeof data !== "object" || data.type !== CONSENT) return null;
  if (!Array.isArray(allowedOrigins) || !allowedOrigins.includes(event.origin)) return { refused: String(event.origin) };
  if (data.consent !== "granted" && data.consent !== "declined") return null;
  const viewerId = typeof data.viewer_id === "string" && VIEWER_ID.test(data.viewer_id) ? data.viewer_id : null;
  return {
    consent: data.consent,
    viewerId,
    // An e-mail only means something with the host's viewer id and its signed token.
    email: viewerId ? text(data.viewer_email, 254) : null,
    token: viewerId ? text(data.identity_token, 128) : null,
  };
}

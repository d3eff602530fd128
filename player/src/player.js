// <wave-player video-id="..."> : the embeddable player.
//
// Light DOM on purpose: the host page (and its tests) see a standard <video> element and
// the consent buttons, and can style them. Everything the viewer sees is built here;
// everything the edge hears goes through ViewTracker -> Batcher, and only after consent.

import { ANONYMOUS_NOTICE, ConsentMemory, envelope, isAnonymous, recordGrant, recordWithdrawal } from "./consent.js";
import { CONSENT, READY, RECORDED, hostAnswer } from "./host.js";
import { SeekPreview } from "./preview.js";
import { liveLabel } from "./live.js";
import { attachHls, attachWhep } from "./sources.js";
import { ViewTracker, randomId } from "./telemetry.js";
import { Batcher } from "./transport.js";
import { STYLE } from "./style.js";

// The edge this script came from: the script embed runs on other sites' pages.
const SCRIPT_ORIGIN = (() => {
  try {
    const src = document.currentScript && document.currentScript.src;
    return src ? new URL(src).origin : location.origin;
  } catch {
    return location.origin;
  }
})();

const DEFAULT_CONSENT_TEXT =
  "May we measure how this video plays (start-up time, stalls, errors) to improve it? " +
  "We store a random viewer id, your approximate location and your device type, nothing else.";

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
}

// Inline SVG icons: no icon font, no emoji (not every system has a font for them).
const ICONS = {
  play: "M8 5v14l11-7z",
  pause: "M6 5h4v14H6zM14 5h4v14h-4z",
  sound: "M3 9v6h4l5 5V4L7 9H3zm13.5 3A4.5 4.5 0 0 0 14 8v8a4.5 4.5 0 0 0 2.5-4z",
  muted: "M3 9v6h4l5 5V4L7 9H3zm18.6 3-2.3-2.3-1.4 1.4 2.3 2.3-2.3 2.3 1.4 1.4 2.3-2.3 2.3 2.3 1.4-1.4-2.3-2.3 2.3-2.3-1.4-1.4z",
  full: "M5 5h5v2H7v3H5zm9 0h5v5h-2V7h-3zM5 14h2v3h3v2H5zm12 0h2v5h-5v-2h3z",
};

function icon(button, name) {
  if (button.dataset.icon === name) return;
  button.dataset.icon = name;
  button.innerHTML = `<svg viewBox="0 0 24 24" width="20" height="20" aria-hidden="true" focusable="false"><path fill="currentColor" d="${ICONS[name]}"/></svg>`;
}

function clock(seconds) {
  if (!Number.isFinite(seconds)) return "live";
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

function injectStyle() {
  if (document.getElementById("wave-player-style")) return;
  const style = el("style", { id: "wave-player-style" });
  style.textContent = STYLE;
  document.head.appendChild(style);
}

function localStore() {
  try {
    return window.localStorage;
  } catch {
    return null; // sandboxed iframe or storage blocked
  }
}

export class WavePlayer extends HTMLElement {
  static get observedAttributes() {
    return ["consent"];
  }

  connectedCallback() {
    if (this.built) return;
    this.built = true;
    injectStyle();
    this.mediaId = this.getAttribute("video-id") || this.getAttribute("stream-id") || this.dataset.videoId || "";
    this.edge = (this.getAttribute("edge") || SCRIPT_ORIGIN).replace(/\/$/, "");
    // The iframe embed (the edge's /embed page marks it): the host's answers come only by
    // postMessage from the tenant's allowed origins, never from attributes or the URL.
    this.embedded = this.hasAttribute("embedded");
    if (this.embedded && window.parent !== window) {
      this.onHostMessage = (e) => this.hostMessage(e);
      window.addEventListener("message", this.onHostMessage);
    }
    this.build();
    // Controls exist before the config arrives: a click that early waits for it.
    this.ready = this.start();
    this.ready.catch((err) => this.showMessage(`This video cannot be played: ${err.message}`));
  }

  disconnectedCallback() {
    if (this.tracker) this.tracker.pageHide();
    if (this.batcher) this.batcher.flushOnHide();
    if (this.source) this.source.destroy();
    window.removeEventListener("pagehide", this.onPageHide);
    if (this.onHostMessage) window.removeEventListener("message", this.onHostMessage);
    document.removeEventListener("visibilitychange", this.onVisibility);
  }

  attributeChangedCallback(name, _old, value) {
    // A host consent manager may answer after the player started (script embeds only:
    // in the iframe embed, attributes are the edge's page, not the host's code).
    if (name === "consent" && this.config && !this.embedded) {
      if (value === "granted") this.accept({ fromHost: true });
      else if (value === "declined") this.decline();
    }
  }

  // ---- DOM -------------------------------------------------------------------------

  build() {
    const root = el("div", { class: "wave-root", tabindex: "0", role: "region", "aria-label": "Video player" });
    const video = el("video", { class: "wave-video", playsinline: "", preload: "metadata", crossorigin: "anonymous" });
    for (const track of Array.from(this.querySelectorAll("track"))) video.appendChild(track); // captions
    if (this.hasAttribute("muted")) video.muted = true;
    const bar = el("div", { class: "wave-controls" });
    this.playButton = el("button", { type: "button", class: "wave-play", "aria-label": "Play" });
    this.seek = el("input", { type: "range", class: "wave-seek", min: "0", max: "0", step: "0.1", value: "0", "aria-label": "Seek" });
    this.time = el("span", { class: "wave-time", "aria-live": "off" }, "0:00");
    this.muteButton = el("button", { type: "button", class: "wave-mute", "aria-label": "Mute" });
    this.ccButton = el("button", { type: "button", class: "wave-cc", "aria-label": "Captions", hidden: "" }, "CC");
    this.privacyButton = el("button", { type: "button", class: "wave-privacy", "data-consent": "settings", "aria-label": "Privacy choices" }, "Privacy");
    this.fullButton = el("button", { type: "button", class: "wave-full", "aria-label": "Full screen" });
    icon(this.playButton, "play");
    icon(this.muteButton, "sound");
    icon(this.fullButton, "full");
    bar.append(this.playButton, this.seek, this.time, this.muteButton, this.ccButton, this.privacyButton, this.fullButton);
    this.message = el("div", { class: "wave-message", role: "alert", hidden: "" });
    this.panel = el("div", { class: "wave-consent", role: "dialog", "aria-label": "Privacy choice", hidden: "" });
    root.append(video, this.message, this.panel, bar);
    this.replaceChildren(root);
    this.root = root;
    this.video = video;
    this.preview = new SeekPreview(root, this.seek, { format: clock });
    this.wireControls();
  }

  wireControls() {
    const v = this.video;
    this.playButton.addEventListener("click", () => this.toggle());
    v.addEventListener("click", () => this.toggle());
    this.muteButton.addEventListener("click", () => { v.muted = !v.muted; });
    this.fullButton.addEventListener("click", () => this.fullscreen());
    this.ccButton.addEventListener("click", () => this.toggleCaptions());
    this.privacyButton.addEventListener("click", () => this.showConsent(true));
    this.seek.addEventListener("input", () => { v.currentTime = Number(this.seek.value); });
    const paint = () => {
      const playing = !v.paused && !v.ended;
      icon(this.playButton, playing ? "pause" : "play");
      this.playButton.setAttribute("aria-label", playing ? "Pause" : "Play");
      icon(this.muteButton, v.muted ? "muted" : "sound");
      this.muteButton.setAttribute("aria-label", v.muted ? "Unmute" : "Mute");
      // hls.js gives a live stream a finite duration (what it has buffered): ask the config.
      const live = Boolean(this.config && this.config.live) || !Number.isFinite(v.duration);
      this.seek.hidden = live;
      if (!live) {
        this.seek.max = String(v.duration || 0);
        this.seek.value = String(v.currentTime);
        this.seek.setAttribute("aria-valuetext", `${clock(v.currentTime)} of ${clock(v.duration || 0)}`);
      }
      this.time.textContent = live ? liveLabel(this.latency()) : `${clock(v.currentTime)} / ${clock(v.duration || 0)}`;
      this.time.classList.toggle("wave-live", live);
    };
    for (const ev of ["play", "pause", "timeupdate", "durationchange", "volumechange", "ended", "loadedmetadata"]) v.addEventListener(ev, paint);
    v.textTracks.addEventListener("addtrack", () => { this.ccButton.hidden = false; });
    if (v.textTracks.length) this.ccButton.hidden = false;
    this.root.addEventListener("keydown", (e) => this.onKey(e));
  }

  onKey(e) {
    const t = e.target;
    if (t !== this.root && t !== this.video) return; // buttons and the slider handle their own keys
    const v = this.video;
    const keys = {
      " ": () => this.toggle(),
      k: () => this.toggle(),
      m: () => { v.muted = !v.muted; },
      f: () => this.fullscreen(),
      c: () => this.toggleCaptions(),
      ArrowLeft: () => { v.currentTime = Math.max(0, v.currentTime - 5); },
      ArrowRight: () => { v.currentTime = v.currentTime + 5; },
    };
    const action = keys[e.key];
    if (action) {
      e.preventDefault();
      action();
    }
  }

  toggle() {
    const v = this.video;
    if (v.paused || v.ended) this.play();
    else v.pause();
  }

  /** Play intent: the view starts now (startup time is measured from here). */
  play() {
    this.ready
      .then(() => {
        this.tracker.loadIntent();
        return this.ensureSource();
      })
      .then(() => this.video.play())
      .catch((err) => {
        if (!this.tracker || (err && err.name === "NotAllowedError")) return; // no config, or autoplay refused
        this.tracker.error({ code: "play_failed", message: err && err.message, fatal: false });
      });
  }

  fullscreen() {
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
    else if (this.root.requestFullscreen) this.root.requestFullscreen().catch(() => {});
  }

  toggleCaptions() {
    const track = this.video.textTracks[0];
    if (track) track.mode = track.mode === "showing" ? "hidden" : "showing";
  }

  /** The live stream stopped: say so, rather than hold a frozen picture. */
  liveEnded() {
    if (this.source) this.source.destroy();
    this.source = null;
    this.tracker.ended();
    this.showMessage("The live stream has ended.");
    this.dispatchEvent(new Event("wave-live-ended"));
  }

  showMessage(text) {
    this.message.textContent = text;
    this.message.hidden = false;
  }

  // ---- media -----------------------------------------------------------------------

  async start() {
    if (!this.mediaId) throw new Error("no video-id attribute");
    const token = this.getAttribute("token");
    const q = token ? `?token=${encodeURIComponent(token)}` : "";
    const res = await fetch(`${this.edge}/v1/playback/${encodeURIComponent(this.mediaId)}${q}`, { credentials: "omit" });
    if (!res.ok) {
      let why = `the edge answered ${res.status}`;
      try {
        const body = await res.json();
        if (body && body.detail && body.detail.message) why = body.detail.message;
      } catch {
        /* not JSON */
      }
      throw new Error(why);
    }
    const config = await res.json();
    this.config = config;
    // The edge of the media's region: another region's edge redirected the config request
    // there (307), and beacons must go straight to it (sendBeacon follows no redirect).
    if (res.url) this.edge = new URL(res.url).origin;
    this.urls = {
      consent: `${this.edge}/v1/consent`,
      withdraw: `${this.edge}/v1/consent/withdraw`,
      collect: `${this.edge}/v1/collect`,
    };
    this.hlsUrl = new URL(config.hls_url, this.edge + "/").href;
    this.whepUrl = config.whep_url ? new URL(config.whep_url, this.edge + "/").href : null;
    if (config.poster_url) this.video.poster = new URL(config.poster_url, this.edge + "/").href;
    if (config.title) this.root.setAttribute("aria-label", `Video player: ${config.title}`);
    if (!config.live) this.loadStoryboard();
    this.setUpTelemetry();
    this.setUpConsent();
    this.listenToVideo();
    if (!config.live) await this.ensureSource(); // VOD: first frame ready before the click
    if (this.hasAttribute("autoplay")) setTimeout(() => this.play(), 0); // after `ready` settles
  }

  /** Seek previews: the storyboard sits beside the VOD's playlist (DESIGN §3), with its token. */
  loadStoryboard() {
    const url = new URL(this.hlsUrl);
    url.pathname = url.pathname.replace(/[^/]+$/, "storyboard.vtt");
    this.preview.load(url.href).then((ok) => { if (ok) this.seek.dataset.previews = "on"; });
  }

  ensureSource() {
    if (!this.sourceReady) this.sourceReady = this.attachSource();
    return this.sourceReady;
  }

  async attachSource() {
    const transport = this.getAttribute("transport") || "auto";
    const tracker = this.tracker;
    const handlers = {
      live: this.config.live,
      onRendition: (r) => tracker.rendition(r),
      onError: (e) => {
        tracker.error(e);
        if (e.fatal) this.showMessage("Playback failed. Please try again later.");
      },
    };
    // transport "hls-plain": live HLS without LL-HLS (whole segments), e.g. to compare.
    handlers.lowLatency = transport !== "hls-plain";
    if (this.config.live && this.whepUrl && transport !== "hls" && transport !== "hls-plain") {
      try {
        this.source = await attachWhep(this.video, this.whepUrl, {
          onEnded: () => this.liveEnded(),
          viewerId: this.consented ? this.viewerId : null, // only with a recorded consent
        });
        this.transport = "whep";
        return;
      } catch (err) {
        tracker.error({ code: "whep_failed", message: err.message, fatal: false }); // falls back to HLS
        if (transport === "whep") throw err;
      }
    }
    this.source = attachHls(this.video, this.hlsUrl, handlers);
    this.transport = "hls";
  }

  /** Seconds behind the live edge (hls.js's estimate), or null when not known. */
  latency() {
    const reading = this.source && this.source.latency ? this.source.latency() : null;
    if (!reading || !Number.isFinite(reading.latency)) return null;
    this.time.dataset.latency = reading.latency.toFixed(3);
    if (Number.isFinite(reading.target)) this.time.dataset.targetLatency = reading.target.toFixed(3);
    return reading.latency;
  }

  listenToVideo() {
    const v = this.video;
    const t = this.tracker;
    v.addEventListener("play", () => t.loadIntent());
    v.addEventListener("playing", () => t.playing());
    v.addEventListener("pause", () => { if (!v.ended) t.pause(); });
    v.addEventListener("waiting", () => t.waiting());
    v.addEventListener("seeking", () => t.seeking());
    v.addEventListener("seeked", () => t.seeked());
    v.addEventListener("ended", () => t.ended());
    v.addEventListener("error", () => {
      const e = v.error;
      if (this.transport === "hls" && this.source && !v.src) return; // hls.js reports its own
      t.error({ code: `media_err_${e ? e.code : 0}`, message: e && e.message, fatal: true });
    });
    this.onPageHide = () => {
      t.pageHide();
      this.batcher.flushOnHide();
    };
    this.onVisibility = () => {
      if (document.visibilityState === "hidden") this.batcher.flushOnHide();
    };
    window.addEventListener("pagehide", this.onPageHide);
    document.addEventListener("visibilitychange", this.onVisibility);
  }

  // ---- telemetry and consent -------------------------------------------------------

  setUpTelemetry() {
    const v = this.video;
    this.batcher = new Batcher({
      post: (body, { keepalive }) =>
        fetch(this.urls.collect, {
          method: "POST",
          headers: { "content-type": "text/plain;charset=UTF-8" },
          body,
          keepalive,
          credentials: "omit",
        }).then((r) => r.status, () => 0),
      beacon: (body) => typeof navigator.sendBeacon === "function" && navigator.sendBeacon(this.urls.collect, body),
      // No e-mail in beacons: the proven link made with the consent is what ties them to it.
      // Anonymous mode: no viewer id at all (the edge derives a daily key itself).
      envelope: () => envelope(this.config.tenant_id, this.viewerId),
    });
    this.tracker = new ViewTracker({
      videoId: this.mediaId,
      emit: (event) => this.batcher.push(event),
      sample: () => {
        const rect = this.root.getBoundingClientRect();
        return {
          position_ms: Number.isFinite(v.currentTime) ? Math.max(0, Math.round(v.currentTime * 1000)) : undefined,
          screen_w: window.screen ? window.screen.width : undefined,
          screen_h: window.screen ? window.screen.height : undefined,
          player_w: Math.round(rect.width),
          player_h: Math.round(rect.height),
        };
      },
    });
  }

  setUpConsent() {
    const consent = this.config.consent;
    if (isAnonymous(consent)) return void this.countAnonymously();
    this.memory = new ConsentMemory(localStore(), this.config.tenant_id);
    // Who the host says the viewer is. Script embed: its attributes (the host's own code
    // wrote them, in its own origin). Iframe embed: only what an allowed parent posts.
    this.hostIds = this.embedded
      ? { viewerId: null, email: null, token: null }
      : {
          viewerId: this.getAttribute("viewer-id") || null,
          email: this.getAttribute("viewer-email") || null,
          token: this.getAttribute("identity-token") || null,
        };
    if (this.embedded && window.parent !== window) {
      const pending = this.pendingHostMessage;
      this.pendingHostMessage = null;
      window.parent.postMessage({ type: READY, media_id: this.mediaId }, "*"); // says nothing about the viewer
      if (pending && this.hostMessage(pending)) return;
    }
    const host = this.embedded ? null : this.getAttribute("consent");
    if (host === "granted") return void this.accept({ fromHost: true });
    if (host === "declined") return void this.decline();
    const remembered = this.memory.read(consent.policy_version, consent.valid_from_ms || 0);
    if (remembered) {
      this.viewerId = remembered;
      this.consented = true;
      this.batcher.release();
      return;
    }
    this.showConsent(false);
  }

  /**
   * The tenant counts anonymously: no prompt, no viewer id, and no storage of any kind
   * (no ConsentMemory over localStorage: it is never even opened). Beacons flow at once.
   */
  countAnonymously() {
    this.anonymous = true;
    this.memory = new ConsentMemory(null, this.config.tenant_id);
    this.hostIds = { viewerId: null, email: null, token: null };
    this.viewerId = null;
    this.consented = true;
    if (this.embedded && window.parent !== window) {
      window.parent.postMessage({ type: READY, media_id: this.mediaId }, "*"); // says nothing about the viewer
    }
    this.batcher.release();
  }

  /** The prompt (first visit) or the privacy panel (from the Privacy button). */
  showConsent(fromButton) {
    const consent = this.config.consent;
    const panel = this.panel;
    if (fromButton && !panel.hidden) {
      panel.hidden = true;
      return;
    }
    panel.replaceChildren();
    if (this.anonymous) {
      panel.append(
        el("p", { class: "wave-consent-text" }, ANONYMOUS_NOTICE),
        el("button", { type: "button", "data-consent": "close" }, "Close"),
      );
    } else if (this.consented) {
      panel.append(
        el("p", {}, "You share viewing statistics with this site's video platform."),
        el("button", { type: "button", "data-consent": "withdraw" }, "Stop sharing and forget me"),
        el("button", { type: "button", "data-consent": "close" }, "Close"),
      );
    } else {
      panel.append(
        el("p", { class: "wave-consent-text" }, consent.text || DEFAULT_CONSENT_TEXT),
        el("p", { class: "wave-consent-policy" }, `Privacy policy version ${consent.policy_version}`),
        el("button", { type: "button", "data-consent": "accept" }, "Accept"),
        el("button", { type: "button", "data-consent": "decline" }, "Decline"),
      );
    }
    panel.onclick = (e) => {
      const choice = e.target && e.target.getAttribute && e.target.getAttribute("data-consent");
      if (choice === "accept") this.accept({ fromHost: false });
      else if (choice === "decline") this.decline();
      else if (choice === "withdraw") this.withdraw();
      else if (choice === "close") panel.hidden = true;
    };
    panel.hidden = false;
    const first = panel.querySelector("button");
    if (fromButton && first) first.focus();
  }

  /** A message from the framing page; true if it was a host answer the player followed. */
  hostMessage(event) {
    if (!this.config) {
      // Too early to check its origin against the tenant's: keep the latest for later.
      if (event && event.source === window.parent && event.data && event.data.type === CONSENT) this.pendingHostMessage = event;
      return false;
    }
    const answer = hostAnswer(event, window.parent, this.config.consent.host_origins || []);
    if (!answer) return false;
    if (answer.refused) {
      console.warn(`wave-player: consent from ${answer.refused} ignored: not one of this tenant's allowed origins`);
      return false;
    }
    const reply = (granted) => {
      try {
        event.source.postMessage({ type: RECORDED, granted }, event.origin);
      } catch {
        /* the host went away */
      }
    };
    if (answer.consent === "declined") {
      this.decline();
      reply(false);
      return true;
    }
    this.hostIds = { viewerId: answer.viewerId, email: answer.email, token: answer.token };
    this.accept({ fromHost: true }).then(() => reply(Boolean(this.consented)));
    return true;
  }

  /** One grant at a time: a second answer while the first is being recorded waits for it. */
  accept(options) {
    if (this.consented || this.anonymous) return Promise.resolve(); // anonymous: nothing to record
    if (!this.granting) this.granting = this.grant(options).finally(() => { this.granting = null; });
    return this.granting;
  }

  async grant({ fromHost }) {
    this.panel.hidden = true;
    const hostId = this.hostIds.viewerId;
    const viewerId = hostId || this.memory.read(this.config.consent.policy_version, this.config.consent.valid_from_ms || 0)
      || randomId();
    // An e-mail goes only with the host's own viewer id and the token its server signed
    // for both: the edge refuses anything less (a link must be proven).
    const identified = this.config.consent.identified && hostId && this.hostIds.email && this.hostIds.token;
    if (this.hostIds.email && !identified) {
      console.warn("wave-player: viewer-email ignored: it needs viewer-id and identity-token, for a tenant that identifies viewers");
    }
    const ok = await recordGrant(this.urls, {
      tenantId: this.config.tenant_id,
      viewerId,
      policyVersion: this.config.consent.policy_version,
      email: identified ? this.hostIds.email : null,
      identityToken: identified ? this.hostIds.token : null,
    });
    if (!ok) {
      this.batcher.stop(); // the ledger has no grant: sending would only be refused
      return;
    }
    this.viewerId = viewerId;
    this.consented = true;
    if (!hostId) this.memory.save(viewerId, this.config.consent.policy_version);
    this.batcher.release();
    this.dispatchEvent(new CustomEvent("wave-consent", { detail: { granted: true, fromHost } }));
  }

  decline() {
    this.panel.hidden = true;
    this.consented = false;
    this.batcher.stop();
    this.dispatchEvent(new CustomEvent("wave-consent", { detail: { granted: false } }));
  }

  async withdraw() {
    this.panel.hidden = true;
    const viewerId = this.viewerId;
    this.batcher.stop();
    this.memory.erase();
    this.consented = false;
    this.viewerId = null;
    if (viewerId) await recordWithdrawal(this.urls, { tenantId: this.config.tenant_id, viewerId });
    this.dispatchEvent(new CustomEvent("wave-consent", { detail: { granted: false, withdrawn: true } }));
  }
}

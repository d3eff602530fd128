// The admin dashboard (/admin): sign in, then every panel reads /v1/analytics/* with the
// HttpOnly session cookie (the admin key is sent once, to /admin/session, and never kept
// by the page). Chart.js draws the series; everything else is plain DOM.

import {
  CategoryScale,
  Chart,
  Filler,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
} from "chart.js";

Chart.register(CategoryScale, LinearScale, LineController, LineElement, PointElement, Filler, Tooltip);

const TILES = [
  ["views", "Views", ""],
  ["unique_viewers", "Unique viewers", ""],
  ["watch_time_s", "Watch time", "duration"],
  ["playing_time_s", "Playing time", "duration"],
  ["startup_time_ms_p50", "Startup p50", "ms"],
  ["startup_time_ms_p95", "Startup p95", "ms"],
  ["rebuffer_pct", "Rebuffering", "%"],
  ["rebuffer_frequency_per_min", "Rebuffers / min", ""],
  ["playback_failure_pct", "Playback failures", "%"],
  ["exits_before_start_pct", "Exits before start", "%"],
  ["average_bitrate_kbps", "Average bitrate", "kbps"],
  ["upscale_pct", "Upscaled", "%"],
];
// dimension, panel title, column heading
const BREAKDOWNS = [
  ["country", "Countries", "Country"],
  ["os", "Operating systems", "OS"],
  ["browser", "Browsers", "Browser"],
  ["device", "Devices", "Device"],
  ["screen", "Screen sizes", "Screen (longer side, px)"],
  ["video", "Videos", "Video"],
];

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const child of children) node.append(child);
  return node;
}

export function format(value, unit) {
  if (value === null || value === undefined) return "–";
  if (unit === "duration") {
    const s = Math.round(value);
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }
  if (unit === "ms") return `${Math.round(value)} ms`;
  if (unit === "ms1") return `${Number(value).toFixed(1)} ms`;
  if (unit === "kbps") return value >= 1000 ? `${(value / 1000).toFixed(2)} Mbps` : `${Math.round(value)} kbps`;
  if (unit === "%") return `${Number(value).toFixed(2)} %`;
  return Number.isInteger(value) ? value.toLocaleString("en") : Number(value).toFixed(2);
}

/** ISO 3166 alpha-2 -> its flag (regional indicator symbols); other values unchanged. */
export function flag(code) {
  if (!/^[A-Z]{2}$/.test(code)) return "";
  return String.fromCodePoint(...[...code].map((c) => 0x1f1e6 + c.charCodeAt(0) - 65));
}

async function api(path, params = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params)) if (v) url.searchParams.set(k, v);
  const res = await fetch(url, { credentials: "same-origin", headers: { accept: "application/json" } });
  if (res.status === 401) throw Object.assign(new Error("signed out"), { status: 401 });
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    throw new Error((body.detail && body.detail.message) || `HTTP ${res.status}`);
  }
  return res.json();
}

// ---- state --------------------------------------------------------------------------

const state = { from: null, to: null, live: true, video: "", metric: "views", titles: {}, chart: null, timer: null };

function range() {
  return { from: new Date(state.from).toISOString(), to: new Date(state.to).toISOString(), video_id: state.video };
}

function interval() {
  const span = state.to - state.from;
  if (span <= 36 * 3600e3) return "minute";
  if (span <= 90 * 86400e3) return "hour";
  return "day";
}

function setPreset(hours) {
  state.live = true;
  state.to = Date.now();
  state.from = state.to - hours * 3600e3;
  $("#from").value = new Date(state.from).toISOString().slice(0, 16);
  $("#to").value = new Date(state.to).toISOString().slice(0, 16);
}

// ---- panels -------------------------------------------------------------------------

/**
 * How the figures counted viewers (the API's `unique_viewers_scope`): consented viewers
 * are unique over the range; anonymous ones have a key that lasts a day, so their
 * "unique viewers" are per day, summed over the range. Returns [badge text, tile label].
 */
export function countingLabel(scope) {
  if (scope === "day") return ["anonymous counting: unique viewers per day", "Unique viewers (per day)"];
  if (scope === "mixed") {
    return ["mixed counting: consented viewers unique over the range, anonymous viewers per day",
      "Unique viewers (mixed)"];
  }
  return ["consented viewers: unique over the range", "Unique viewers"];
}

function renderTiles(summary) {
  const tiles = $("#tiles");
  const [badge, uniqueLabel] = countingLabel(summary.unique_viewers_scope);
  tiles.replaceChildren(
    ...TILES.map(([key, label, unit]) =>
      el("div", { class: "tile", "data-field": key },
        el("span", { class: "label" }, key === "unique_viewers" ? uniqueLabel : label),
        el("strong", { class: "value" }, format(summary[key], unit)),
        ...(key === "unique_viewers"
          ? [el("span", { class: "badge", id: "counting", "data-scope": summary.unique_viewers_scope || "range",
              "data-mode": summary.consent_mode || "opt-in" }, badge)]
          : []))),
  );
}

function renderChart(series) {
  const labels = series.points.map((p) => p.t.replace("T", " ").replace(":00Z", "").replace("Z", ""));
  const values = series.points.map((p) => p.value);
  if (state.chart) state.chart.destroy();
  state.chart = new Chart($("#chart"), {
    type: "line",
    data: { labels, datasets: [{ label: series.metric, data: values, fill: true, borderColor: "#2f6fdf",
                                 backgroundColor: "rgba(47,111,223,.15)", pointRadius: 0, tension: 0.2 }] },
    options: { animation: false, responsive: true, maintainAspectRatio: false,
               scales: { x: { ticks: { maxTicksLimit: 8 } }, y: { beginAtZero: true } },
               plugins: { tooltip: { mode: "index", intersect: false } } },
  });
}

function renderBreakdown(dimension, title, heading, rows, scope) {
  const head = el("tr", {}, el("th", {}, heading),
    el("th", {}, "Views"), el("th", {}, scope === "day" ? "Viewers per day" : "Viewers"), el("th", {}, "Watch time"), el("th", {}, "Rebuffering"),
    el("th", {}, "Failures"));
  const body = rows.map((r) => {
    let name = r.value;
    if (dimension === "country") name = `${flag(r.value)} ${r.value}`.trim();
    if (dimension === "video") name = state.titles[r.value] || r.value;
    return el("tr", { "data-value": r.value }, el("td", {}, name), el("td", {}, format(r.views)),
      el("td", {}, format(r.unique_viewers)), el("td", {}, format(r.watch_time_s, "duration")),
      el("td", {}, format(r.rebuffer_pct, "%")), el("td", {}, format(r.playback_failure_pct, "%")));
  });
  const csv = el("a", { href: csvLink(dimension), class: "csv" }, "CSV");
  const table = el("table", { "data-dimension": dimension }, el("thead", {}, head), el("tbody", {}, ...body));
  return el("section", { class: "panel" }, el("h2", {}, title, " ", csv), table);
}

function csvLink(dimension) {
  const url = new URL("/v1/analytics/breakdown", location.origin);
  const params = { ...range(), dimension, format: "csv", limit: "1000" };
  for (const [k, v] of Object.entries(params)) if (v) url.searchParams.set(k, v);
  return url.pathname + url.search;
}

// WebRTC viewers as the edge measured them (RTCP receiver reports): per stream, then the
// newest viewer sessions (one row per session and media kind from the API, shown per kind).
const WEBRTC_SESSIONS_SHOWN = 50;

function webrtcParams() {
  const { from, to, video_id: stream } = range();
  // A preset range ends now: the live panel keeps following the present.
  return { from, to: state.live ? new Date().toISOString() : to, stream_id: stream };
}

function renderWebrtc(data) {
  const name = (id) => state.titles[id] || id;
  const streams = data.streams.map((s) =>
    el("tr", { "data-stream": s.stream_id }, el("td", {}, name(s.stream_id)), el("td", {}, format(s.sessions)),
      el("td", {}, format(s.rtt_ms, "ms1")), el("td", {}, format(s.jitter_ms, "ms1")),
      el("td", {}, format(s.loss_pct, "%")), el("td", {}, format(s.packets_sent))));
  $('table[data-panel="webrtc-streams"] tbody').replaceChildren(...streams);
  const sessions = data.rows.slice(0, WEBRTC_SESSIONS_SHOWN).map((r) =>
    el("tr", { "data-session": r.session_id, "data-kind": r.kind }, el("td", {}, r.session_id.slice(0, 8)),
      el("td", {}, name(r.stream_id)), el("td", {}, r.kind), el("td", {}, r.started_at.replace("T", " ").replace("Z", "")),
      el("td", {}, format(r.rtt_ms, "ms1")), el("td", {}, format(r.jitter_ms, "ms1")),
      el("td", {}, format(r.loss_pct, "%")), el("td", {}, format(r.packets_sent))));
  $('table[data-panel="webrtc-sessions"] tbody').replaceChildren(...sessions);
  const csv = new URL("/v1/analytics/webrtc", location.origin);
  for (const [k, v] of Object.entries({ ...webrtcParams(), format: "csv" })) if (v) csv.searchParams.set(k, v);
  $("#webrtc-csv").setAttribute("href", csv.pathname + csv.search);
}

async function refreshWebrtc() {
  try {
    renderWebrtc(await api("/v1/analytics/webrtc", webrtcParams()));
  } catch (err) {
    if (err.status === 401) signedOut();
  }
}

async function renderRealtime() {
  try {
    const rt = await api("/v1/analytics/realtime");
    $("#realtime-now").textContent = format(rt.viewers_now);
    $("#realtime-minutes").textContent = rt.per_minute.map((m) => m.viewers).join(" · ");
  } catch (err) {
    if (err.status === 401) signedOut();
  }
}

async function refresh() {
  $("#error").hidden = true;
  try {
    const [summary, quality, series, webrtc, ...tables] = await Promise.all([
      api("/v1/analytics/summary", range()),
      api("/v1/analytics/quality", range()),
      api("/v1/analytics/timeseries", { ...range(), metric: state.metric, interval: interval() }),
      api("/v1/analytics/webrtc", webrtcParams()),
      ...BREAKDOWNS.map(([d]) => api("/v1/analytics/breakdown", { ...range(), dimension: d })),
    ]);
    renderTiles({ ...summary, ...quality });
    renderWebrtc(webrtc);
    renderChart(series);
    $("#breakdowns").replaceChildren(...BREAKDOWNS.map(([d, title, heading], i) => renderBreakdown(d, title, heading, tables[i].rows,
      tables[i].unique_viewers_scope)));
    document.body.dataset.loaded = "true";
  } catch (err) {
    if (err.status === 401) return signedOut();
    $("#error").textContent = err.message;
    $("#error").hidden = false;
  }
}

async function loadVideos() {
  try {
    const [videos, streams] = await Promise.all([api("/v1/videos"), api("/v1/streams")]);
    const select = $("#video");
    const options = [el("option", { value: "" }, "All videos and streams")];
    for (const v of videos.videos) {
      state.titles[v.video_id] = v.title || v.video_id;
      options.push(el("option", { value: v.video_id }, v.title || v.video_id));
    }
    for (const s of streams.streams) {
      state.titles[s.stream_id] = `${s.name} (live)`;
      options.push(el("option", { value: s.stream_id }, `${s.name} (live)`));
    }
    select.replaceChildren(...options);
    select.value = state.video;
  } catch {
    /* the filter stays at "all": the figures still load */
  }
}

// ---- sign in / out --------------------------------------------------------------------

function signedOut() {
  clearInterval(state.timer);
  document.body.dataset.view = "signin";
  delete document.body.dataset.loaded;
  $("#key").focus();
}

async function signedIn() {
  document.body.dataset.view = "dashboard";
  await loadVideos();
  await refresh();
  renderRealtime();
  clearInterval(state.timer);
  state.timer = setInterval(() => {
    renderRealtime();
    if (state.live) refreshWebrtc(); // a preset range (up to now): the live panel follows
  }, 10_000);
}

// A key names its tenant's region (`wk_<region>_...`), and the tenant's data lives only
// there: send the admin to that region's dashboard (the key is typed again there; it is
// never carried in a URL). The browser hides a cross-origin redirect's Location from the
// page, so the region's address comes from this edge's region map.
async function toKeysRegion(key) {
  const m = /^wk_([a-z0-9][a-z0-9-]{1,31})_/.exec(key);
  if (!m) return false;
  try {
    const res = await fetch("/.well-known/wave-edge/regions", { credentials: "omit" });
    const base = (await res.json()).regions[m[1]];
    if (!base) return false;
    location.assign(`${base}/admin`);
    return true;
  } catch {
    return false;
  }
}

async function signIn(event) {
  event.preventDefault();
  const key = $("#key").value.trim();
  $("#key").value = ""; // the key leaves the page's memory with this request
  const res = await fetch("/admin/session", {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json", "x-wave-csrf": "1" },
    body: JSON.stringify({ admin_key: key }),
    redirect: "manual", // another region's key: this edge answers 307 to that region's edge
  });
  if (res.type === "opaqueredirect" && (await toKeysRegion(key))) return;
  if (res.status !== 201) {
    $("#signin-error").textContent = "That key was not accepted.";
    $("#signin-error").hidden = false;
    return;
  }
  const who = await res.json();
  $("#tenant").textContent = who.name;
  $("#signin-error").hidden = true;
  await signedIn();
}

async function signOut() {
  // The custom header is the CSRF defence: other pages cannot send it without asking first.
  await fetch("/admin/session", { method: "DELETE", credentials: "same-origin", headers: { "x-wave-csrf": "1" } });
  signedOut();
}

function start() {
  setPreset(7 * 24);
  $("#signin").addEventListener("submit", signIn);
  $("#signout").addEventListener("click", signOut);
  for (const button of document.querySelectorAll("[data-preset]")) {
    button.addEventListener("click", () => {
      setPreset(Number(button.dataset.preset));
      refresh();
    });
  }
  $("#range").addEventListener("submit", (e) => {
    e.preventDefault();
    state.live = false;
    state.from = Date.parse($("#from").value + "Z");
    state.to = Date.parse($("#to").value + "Z");
    refresh();
  });
  $("#video").addEventListener("change", () => {
    state.video = $("#video").value;
    refresh();
  });
  $("#metric").replaceChildren(...TILES.map(([k, label]) => el("option", { value: k }, label)),
    el("option", { value: "concurrent_viewers" }, "Concurrent viewers"));
  $("#metric").addEventListener("change", () => {
    state.metric = $("#metric").value;
    refresh();
  });
  // Signed in already (the cookie lives on)?
  fetch("/admin/session", { credentials: "same-origin" }).then(async (res) => {
    if (res.status !== 200) return signedOut();
    $("#tenant").textContent = (await res.json()).name;
    return signedIn();
  }, signedOut);
}

if (typeof document !== "undefined") {
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
}

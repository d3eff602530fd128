// Seek previews: the thumbnail of the moment under the pointer while the viewer hovers or
// drags the seek bar, from the video's WebVTT storyboard (`storyboard.vtt`, cues
// `sprite-N.jpg#xywh=x,y,w,h`). The picture is decorative (aria-hidden): the slider itself
// stays the accessible control, and says the time it points at.

/** Cue times `HH:MM:SS.mmm` or `MM:SS.mmm` -> seconds. */
function seconds(stamp) {
  const parts = stamp.trim().split(":").map(Number);
  if (parts.some((n) => !Number.isFinite(n))) return NaN;
  return parts.reduce((acc, n) => acc * 60 + n, 0);
}

/**
 * The cues of a storyboard: [{start, end, url, x, y, w, h}], sprite URLs resolved against
 * the storyboard's own URL (so a private video's `?token=` written by the edge is kept).
 * Cues that are not `#xywh=` pictures are skipped.
 */
export function parseStoryboard(text, baseUrl) {
  const cues = [];
  const blocks = String(text).replace(/\r\n?/g, "\n").split(/\n{2,}/);
  for (const block of blocks) {
    const lines = block.split("\n").filter((l) => l.trim() !== "");
    const at = lines.findIndex((l) => l.includes("-->"));
    if (at < 0 || at + 1 >= lines.length) continue;
    const [from, to] = lines[at].split("-->");
    const start = seconds(from);
    const end = seconds((to || "").trim().split(/\s+/)[0]);
    const target = lines[at + 1].trim();
    const hash = target.indexOf("#xywh=");
    if (!Number.isFinite(start) || !Number.isFinite(end) || hash < 0) continue;
    const [x, y, w, h] = target.slice(hash + 6).split(",").map(Number);
    if (![x, y, w, h].every(Number.isFinite)) continue;
    let url;
    try {
      url = new URL(target.slice(0, hash), baseUrl).href;
    } catch {
      continue;
    }
    cues.push({ start, end, url, x, y, w, h });
  }
  return cues.sort((a, b) => a.start - b.start);
}

/** The cue showing at `time` (the last one starting at or before it), or null. */
export function cueAt(cues, time) {
  let lo = 0;
  let hi = cues.length - 1;
  let found = null;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (cues[mid].start <= time) {
      found = cues[mid];
      lo = mid + 1;
    } else hi = mid - 1;
  }
  if (!found) return null;
  return time < found.end || found === cues[cues.length - 1] ? found : null; // the end of the video: its last picture
}

/** Shows storyboard thumbnails over a range input `seek` inside `root`. */
export class SeekPreview {
  constructor(root, seek, { format = (t) => String(t) } = {}) {
    this.root = root;
    this.seek = seek;
    this.format = format;
    this.cues = [];
    this.box = document.createElement("div");
    this.box.className = "wave-preview";
    this.box.setAttribute("aria-hidden", "true");
    this.box.hidden = true;
    this.picture = document.createElement("div");
    this.picture.className = "wave-preview-image";
    this.label = document.createElement("span");
    this.label.className = "wave-preview-time";
    this.box.append(this.picture, this.label);
    root.appendChild(this.box);
    const atPointer = (e) => this.showAt(this.timeAtX(e.clientX), e.clientX);
    seek.addEventListener("pointermove", atPointer);
    seek.addEventListener("pointerdown", atPointer);
    seek.addEventListener("pointerleave", () => { if (!this.dragging) this.hide(); });
    seek.addEventListener("pointerdown", () => { this.dragging = true; });
    window.addEventListener("pointerup", () => {
      if (this.dragging) {
        this.dragging = false;
        this.hide();
      }
    });
    // Dragging (and the keyboard): the picture follows the thumb.
    seek.addEventListener("input", () => { if (!this.dragging) this.showAt(Number(seek.value), null); });
    seek.addEventListener("blur", () => this.hide());
  }

  /** Fetch and parse the storyboard; without one (older videos), previews stay off. */
  async load(url, fetchImpl = fetch) {
    try {
      const res = await fetchImpl(url, { credentials: "omit" });
      if (!res.ok) return false;
      this.cues = parseStoryboard(await res.text(), res.url || url);
    } catch {
      this.cues = [];
    }
    return this.cues.length > 0;
  }

  timeAtX(clientX) {
    const rect = this.seek.getBoundingClientRect();
    const max = Number(this.seek.max) || 0;
    const ratio = rect.width > 0 ? Math.min(1, Math.max(0, (clientX - rect.left) / rect.width)) : 0;
    return ratio * max;
  }

  showAt(time, clientX) {
    const cue = cueAt(this.cues, time);
    if (!cue) return this.hide();
    const seekRect = this.seek.getBoundingClientRect();
    const rootRect = this.root.getBoundingClientRect();
    const max = Number(this.seek.max) || 0;
    const x = clientX !== null ? clientX : seekRect.left + (max > 0 ? (time / max) * seekRect.width : 0);
    const left = Math.min(Math.max(0, x - rootRect.left - cue.w / 2), Math.max(0, rootRect.width - cue.w - 4));
    Object.assign(this.picture.style, {
      width: `${cue.w}px`,
      height: `${cue.h}px`,
      backgroundImage: `url("${cue.url.replace(/"/g, "%22")}")`,
      backgroundPosition: `-${cue.x}px -${cue.y}px`,
    });
    this.box.style.left = `${left}px`;
    this.label.textContent = this.format(time);
    this.box.dataset.time = String(time);
    this.box.hidden = false;
    return cue;
  }

  hide() {
    this.box.hidden = true;
    return null;
  }
}

// The bundle's entry: defines <wave-player>, and upgrades `data-wave-video-id` elements
// for host pages that prefer plain markup to a custom element.

import { WavePlayer } from "./player.js";

if (!customElements.get("wave-player")) customElements.define("wave-player", WavePlayer);

function upgrade() {
  for (const node of document.querySelectorAll("[data-wave-video-id]:not([data-wave-ready])")) {
    node.setAttribute("data-wave-ready", "");
    const player = document.createElement("wave-player");
    player.setAttribute("video-id", node.getAttribute("data-wave-video-id"));
    for (const name of ["token", "consent", "viewer-id", "viewer-email", "identity-token", "transport", "edge", "autoplay", "muted"]) {
      const value = node.getAttribute(`data-${name}`);
      if (value !== null) player.setAttribute(name, value);
    }
    node.appendChild(player);
  }
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", upgrade);
else upgrade();

export { WavePlayer };

// The player's CSS, injected once per page; every class is prefixed `wave-` so host pages
// keep their own styles.

export const STYLE = `
wave-player { display: block; width: 100%; max-width: 100%; }
.wave-root { position: relative; width: 100%; aspect-ratio: 16 / 9; background: #000; color: #fff;
  font: 14px/1.4 system-ui, sans-serif; overflow: hidden; outline: none; }
.wave-root:focus-visible { box-shadow: 0 0 0 3px #4c9ffe; }
.wave-video { width: 100%; height: 100%; display: block; background: #000; object-fit: contain; }
.wave-controls { position: absolute; left: 0; right: 0; bottom: 0; display: flex; gap: 6px;
  align-items: center; padding: 6px 8px; background: linear-gradient(transparent, rgba(0,0,0,.75)); }
.wave-controls button { background: rgba(255,255,255,.12); color: #fff; border: 0; border-radius: 4px;
  min-width: 36px; min-height: 32px; padding: 0 8px; cursor: pointer; font: inherit; }
.wave-controls button:focus-visible, .wave-consent button:focus-visible { outline: 2px solid #4c9ffe; outline-offset: 1px; }
.wave-seek { flex: 1; min-width: 40px; accent-color: #4c9ffe; }
.wave-time { font-variant-numeric: tabular-nums; white-space: nowrap; }
.wave-time.wave-live::before { content: ""; display: inline-block; width: 8px; height: 8px; margin-right: 5px;
  border-radius: 50%; background: #e5322d; vertical-align: 1px; }
.wave-message { position: absolute; top: 40%; left: 10%; right: 10%; text-align: center;
  background: rgba(0,0,0,.7); padding: 12px; border-radius: 6px; }
.wave-consent { position: absolute; left: 8px; right: 8px; bottom: 52px; background: rgba(20,20,24,.94);
  border-radius: 8px; padding: 12px 14px; max-height: calc(100% - 64px); overflow: auto; }
.wave-consent p { margin: 0 0 8px; }
.wave-consent-policy { opacity: .7; font-size: 12px; }
.wave-consent button { margin-right: 8px; min-height: 32px; padding: 0 14px; border-radius: 4px; border: 0;
  cursor: pointer; font: inherit; }
.wave-consent [data-consent="accept"] { background: #4c9ffe; color: #000; }
.wave-preview { position: absolute; bottom: 50px; padding: 2px; background: rgba(0,0,0,.8); border-radius: 4px;
  pointer-events: none; text-align: center; }
.wave-preview-image { background-repeat: no-repeat; border-radius: 2px; }
.wave-preview-time { display: block; font-size: 12px; font-variant-numeric: tabular-nums; }
[hidden] { display: none !important; }
@media (max-width: 420px) { .wave-time { display: none; } .wave-controls { gap: 3px; } }
`;

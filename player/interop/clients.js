// The third-party WebRTC clients the interop tests drive in Chromium, unmodified, bundled
// by esbuild into one script (test-dist/interop.js) a test page loads. Never shipped: the
// edge serves player/dist only.
import { WHIPClient as WhipWhepPublisher } from "whip-whep/whip.js";
import { WHEPClient as WhipWhepViewer } from "whip-whep/whep.js";
import { WHIPClient as EyevinnPublisher } from "@eyevinn/whip-web-client";
import { WebRTCPlayer as EyevinnPlayer } from "@eyevinn/webrtc-player";

window.interop = { WhipWhepPublisher, WhipWhepViewer, EyevinnPublisher, EyevinnPlayer };

// Bundles the player and the admin dashboard into dist/ (IIFE scripts the edge serves
// under /player/), and the third-party WHIP/WHEP clients the interop tests drive into
// test-dist/ (never served by the edge).
import { build } from "esbuild";

const common = {
  bundle: true,
  format: "iife",
  target: ["es2020"],
  minify: true,
  sourcemap: true,
  legalComments: "linked",
  logLevel: "warning",
};

await Promise.all([
  build({ ...common, entryPoints: ["src/index.js"], outfile: "dist/wave-player.js" }),
  build({ ...common, entryPoints: ["src/dashboard/index.js"], outfile: "dist/dashboard.js" }),
  build({ ...common, entryPoints: ["interop/clients.js"], outfile: "test-dist/interop.js", minify: false }),
]);

// Bundles the player into dist/ (one IIFE script, served by the edge under /player/).
import { build } from "esbuild";

await build({
  entryPoints: ["src/index.js"],
  outfile: "dist/wave-player.js",
  bundle: true,
  format: "iife",
  target: ["es2020"],
  minify: true,
  sourcemap: true,
  legalComments: "linked",
  logLevel: "warning",
});

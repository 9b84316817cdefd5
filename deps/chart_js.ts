/**
 * Gateway to chart.js, which the HTML reports inline. The UMD bundle is vendored in
 * `deps/chart.js/` (npm `chart.js@4.6.1`, `dist/chart.umd.min.js`, unmodified; MIT, licence beside
 * it) rather than read from `node_modules/`: a path into `node_modules/` does not exist on the first
 * `deno run` of a fresh clone (Deno lays it out only after loading the module graph, so that run
 * failed with "Module not found"), nor in a remote import or a `deno compile` binary, and the
 * package's `exports` do not expose the bundle to an `npm:` import. To update: copy
 * `dist/chart.umd.min.js` and `LICENSE.md` of the new version here (the version is read from the
 * bundle's banner).
 *
 * @module
 */
import source from "./chart.js/chart.umd.min.js" with { type: "text" };

/** The chart.js UMD bundle, as published. */
export const CHART_JS_SOURCE: string = source;

/** Its version, from the bundle's banner (`Chart.js v4.6.1`). */
export const CHART_JS_VERSION: string = (() => {
  const m = /^\/\*!\s*\n\s*\*\s*Chart\.js v(\d+\.\d+\.\d+)/.exec(source);
  if (!m) throw new Error("deps/chart.js/chart.umd.min.js lost its version banner");
  return m[1]!;
})();

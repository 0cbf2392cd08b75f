/**
 * The monitor page's files, served by the master: `/` is the page, `/monitor/*`
 * its ES modules and styles, `/monitor/vendor/*` the charting library straight
 * from its npm package. A fixed table, so no request path ever reaches the
 * file system. None of these files holds data; the data needs a login.
 *
 * The page's modules import the library by its npm name ("uplot"), so Deno
 * resolves it from node_modules for type checking and tests; in the browser an
 * import map, put into the page here, points that name at /monitor/vendor/.
 */
import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const page = (name: string) => fileURLToPath(new URL(`./page/${name}`, import.meta.url));
const npm = createRequire(import.meta.url);

const JS = "text/javascript; charset=utf-8";
const CSS = "text/css; charset=utf-8";
const HTML = "text/html; charset=utf-8";

const ASSETS: Record<string, { path: string; type: string }> = {
  "/": { path: page("index.html"), type: HTML },
  "/monitor/monitor.css": { path: page("monitor.css"), type: CSS },
  "/monitor/main.js": { path: page("main.js"), type: JS },
  "/monitor/connection.js": { path: page("connection.js"), type: JS },
  "/monitor/render.js": { path: page("render.js"), type: JS },
  "/monitor/charts.js": { path: page("charts.js"), type: JS },
  "/monitor/model.js": { path: page("model.js"), type: JS },
  "/monitor/dom.js": { path: page("dom.js"), type: JS },
  "/monitor/vendor/uPlot.esm.js": { path: npm.resolve("uplot/dist/uPlot.esm.js"), type: JS },
  "/monitor/vendor/uPlot.min.css": { path: npm.resolve("uplot/dist/uPlot.min.css"), type: CSS },
};

const IMPORT_MAP = JSON.stringify({ imports: { uplot: "/monitor/vendor/uPlot.esm.js" } });
const IMPORT_MAP_HASH = createHash("sha256").update(IMPORT_MAP).digest("base64");

/**
 * Same-origin scripts and styles only (and the import map, by its hash): the
 * page must work with no internet, and this makes anything injected into it
 * inert. uPlot sizes its elements through the style property, which style-src
 * does not govern.
 */
const CSP = [
  "default-src 'none'",
  `script-src 'self' 'sha256-${IMPORT_MAP_HASH}'`,
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join("; ");

export function isMonitorAsset(pathname: string): boolean {
  return Object.hasOwn(ASSETS, pathname);
}

/** The file for `pathname`; call only when isMonitorAsset(pathname). */
export async function monitorAsset(pathname: string): Promise<Response> {
  const asset = ASSETS[pathname];
  const body = asset.type === HTML
    ? (await Deno.readTextFile(asset.path)).replace(
      "<!-- import map -->",
      `<script type="importmap">${IMPORT_MAP}</script>`,
    )
    : await Deno.readFile(asset.path);
  return new Response(body, {
    headers: {
      "content-type": asset.type,
      // Revalidate, so a master upgraded in place never runs an old page against a new API.
      "cache-control": "no-cache",
      "x-content-type-options": "nosniff",
      "referrer-policy": "no-referrer",
      "content-security-policy": CSP,
    },
  });
}

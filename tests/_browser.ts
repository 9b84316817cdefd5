/**
 * Opens pages in headless Chromium (the system's, driven by playwright-core) for the report tests:
 * collects console errors and page errors, and checks that every chart canvas has drawn pixels.
 */

import { type BrowserContext, chromium, type Page } from "../deps/playwright.ts";

/** Where the tests expect Chromium (Debian's `chromium` package; CI installs it). */
export const CHROMIUM_PATH = Deno.env.get("DEFT_CHROMIUM") ?? "/usr/bin/chromium";

/**
 * Whether the browser tests run: Chromium must exist, or DEFT_REQUIRE_BROWSER=1 (set by CI) makes
 * them run anyway and fail with the installation advice. On a machine without Chromium they are
 * reported as ignored, with a warning printed once (tests/conformance_scope_test.ts), so
 * `deno task test` still works on a fresh machine.
 */
export const SKIP_BROWSER: boolean = (() => {
  if (Deno.env.get("DEFT_REQUIRE_BROWSER") === "1") return false;
  try {
    Deno.statSync(CHROMIUM_PATH);
    return false;
  } catch {
    return true; // tests/conformance_scope_test.ts says so once
  }
})();

const ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** A headless browser with a fresh profile; `close()` removes the profile. */
export interface Browser {
  context: BrowserContext;
  close(): Promise<void>;
}

/** Launches Chromium; fails with a clear message when it is not installed (never skips). */
export async function launchBrowser(): Promise<Browser> {
  try {
    await Deno.stat(CHROMIUM_PATH);
  } catch {
    throw new Error(
      `Chromium is not installed at ${CHROMIUM_PATH}: the report tests open reports in headless Chromium. Install it (Debian/Ubuntu: sudo apt-get install -y chromium; CI's .ci/run does this) or point DEFT_CHROMIUM at a Chromium binary.`,
    );
  }
  const profile = await Deno.makeTempDir({ prefix: "deft-chromium-" });
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: ARGS,
    viewport: { width: 1280, height: 900 },
  });
  return {
    context,
    async close() {
      await context.close();
      await Deno.remove(profile, { recursive: true }).catch(() => {});
    },
  };
}

/** What a page did: console errors, uncaught errors, failed requests, and blank canvases. */
export interface PageCheck {
  page: Page;
  errors: string[];
  canvases: { id: string; drawn: boolean; width: number; height: number }[];
}

/** Opens `url`, waits for load, and inspects every canvas for non-transparent pixels. */
export async function openAndCheck(browser: Browser, url: string): Promise<PageCheck> {
  const page = await browser.context.newPage();
  const errors: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") {
      errors.push(`console ${m.type()}: ${m.text()}`);
    }
  });
  page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
  page.on("dialog", (d) => {
    errors.push(`dialog: ${d.message()}`);
    d.dismiss().catch(() => {});
  });
  page.on("requestfailed", (r) => errors.push(`request failed: ${r.url()}`));
  await page.goto(url, { waitUntil: "load" });
  // Charts draw synchronously (animation off); one frame lets layout settle.
  await page.evaluate("new Promise((r) => requestAnimationFrame(() => r(null)))");
  // Runs in the page (a string: these tests type-check without the DOM library).
  const canvases = await page.evaluate<PageCheck["canvases"]>(
    `[...document.querySelectorAll("canvas")].map((c) => {
    const { width, height } = c;
    const data = width && height ? c.getContext("2d").getImageData(0, 0, width, height).data : [];
    let drawn = false;
    for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) { drawn = true; break; }
    return { id: c.id, drawn, width, height };
  })`,
  );
  return { page, errors, canvases };
}

/**
 * Gateway to the browser driver (playwright-core, no bundled browsers: it drives the system's
 * Chromium). Used by the report tests only.
 *
 * @module
 */
export { chromium } from "playwright-core";
export type { BrowserContext, Page } from "playwright-core";

// Browserless on a Chromium it is given, with nothing downloaded: bench.peers starts it.
//   CHROMIUM_PATH=/usr/bin/chromium PLAYWRIGHT_BROWSERS_PATH=<empty dir> PORT=... TOKEN=... \
//   CONCURRENT=n QUEUED=n node serve.mjs
// Browserless launches `playwright.chromium.executablePath()`, a path under
// PLAYWRIGHT_BROWSERS_PATH: that path is made a link to CHROMIUM_PATH before Browserless loads.
// Only its Chromium routes are served, as in its own Chromium image (the others need
// Chrome, Edge, Firefox or WebKit builds of their own).
import { mkdir, symlink } from 'node:fs/promises';
import path from 'node:path';
import playwright from 'playwright-core';

const chromium = process.env.CHROMIUM_PATH;
if (!chromium || !process.env.PLAYWRIGHT_BROWSERS_PATH) {
  console.error('serve.mjs: set CHROMIUM_PATH and PLAYWRIGHT_BROWSERS_PATH');
  process.exit(2);
}
const expected = playwright.chromium.executablePath();
await mkdir(path.dirname(expected), { recursive: true });
await symlink(chromium, expected);

const {
  Browserless,
  BrowserlessChromeRoutes,
  BrowserlessEdgeRoutes,
  BrowserlessFirefoxRoutes,
  BrowserlessWebKitRoutes,
} = await import('@browserless.io/browserless');
const others = [
  BrowserlessChromeRoutes,
  BrowserlessEdgeRoutes,
  BrowserlessFirefoxRoutes,
  BrowserlessWebKitRoutes,
];
// As Browserless's own entry point (build/index.js) does: a rejection nobody handled (a page
// closing under a browser that is closing, say) is logged, not the end of the process.
process.on('unhandledRejection', (reason) => {
  console.error('Unhandled Rejection:', reason);
});
const browserless = new Browserless();
browserless.disableRoutes(...others.flatMap((routes) => Object.values(routes)));
await browserless.start();
const stop = async () => {
  await browserless.stop();
  process.exit(0);
};
process.once('SIGTERM', stop).once('SIGINT', stop);

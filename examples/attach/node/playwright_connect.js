#!/usr/bin/env node
// Node Playwright (playwright-core) attached to a broker lease over Playwright's own protocol
// (`browserType.connect`, a lease acquired with attach "playwright"): signs in on the fixture
// site, scrapes, completes an OAuth popup and downloads a file (its bytes come over the
// protocol), then waits for the lease's end to close its socket.
//
// The client's Playwright must be of the broker's server's version (major.minor; the broker
// answers 428 otherwise): PLAYWRIGHT_CORE names that playwright-core (the tests use the one in
// Python Playwright's driver), else the installed one is used. BROWSER_TYPE: chromium (default)
// or firefox, the lease's engine.
//
//   PLAYWRIGHT_CORE=<dir> node playwright_connect.js CONNECT_URL SITE_URL
'use strict';

const core = process.env.PLAYWRIGHT_CORE || 'playwright-core';
const playwright = require(core);
const { ws } = require(`${core}/lib/utilsBundle`);
const { connectUrl, site, print, watchClose, reportClose, fail } = require('./common');

async function readAll(stream) {
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks).toString();
}

async function main() {
  const closed = watchClose(ws);
  const browserType = playwright[process.env.BROWSER_TYPE || 'chromium'];
  const browser = await browserType.connect(connectUrl, { timeout: 30_000 });
  const context = await browser.newContext();
  const page = await context.newPage();

  await page.goto(`${site}/login.html`);
  await page.fill('#user', 'ada');
  await page.fill('#password', 'secret');
  await page.click('#submit');
  await page.waitForURL('**/account');
  print('login', { who: await page.innerText('#who'), stored: await page.innerText('#stored') });

  await page.goto(`${site}/app.html`);
  const [popup] = await Promise.all([page.waitForEvent('popup'), page.click('#oauth')]);
  await popup.waitForLoadState();
  print('popup', { url: popup.url(), title: await popup.title() });
  await popup.click('#approve').catch(() => {}); // the button closes its own window
  await page.waitForFunction(() =>
    document.getElementById('status').textContent.startsWith('connected'),
  );
  print('status', { text: await page.innerText('#status') });

  // The browser writes the file on the broker's host; a remote client reads it over the
  // protocol (saveAs and createReadStream stream it; download.path() is not available).
  await page.goto(`${site}/download.html`);
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#file')]);
  const failure = await download.failure();
  print('download', {
    filename: download.suggestedFilename(),
    url: download.url(),
    state: failure === null ? 'completed' : failure,
    text: await readAll(await download.createReadStream()),
  });

  await reportClose(closed);
}

main().then(() => process.exit(0), fail);

#!/usr/bin/env node
// Node Playwright (playwright-core) attached to a broker lease over CDP: signs in on the
// fixture site, scrapes, completes an OAuth popup and downloads a file, then waits for the
// lease's end to close its socket.
//
//   node playwright.js CONNECT_URL SITE_URL
'use strict';

const { chromium } = require('playwright-core');
const { ws } = require('playwright-core/lib/utilsBundle');
const { connectUrl, site, print, watchClose, reportClose, fail } = require('./common');

async function main() {
  const closed = watchClose(ws);
  const browser = await chromium.connectOverCDP(connectUrl, { timeout: 30_000 });
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
  await popup.click('#approve');
  await page.waitForFunction(() =>
    document.getElementById('status').textContent.startsWith('connected'),
  );
  print('status', { text: await page.innerText('#status') });

  // The file is written in the lease's folder on the broker's host, not here: Playwright
  // reports the download's name and whether it completed.
  await page.goto(`${site}/download.html`);
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#file')]);
  const failure = await download.failure();
  print('download', {
    filename: download.suggestedFilename(),
    url: download.url(),
    state: failure === null ? 'completed' : failure,
  });

  await reportClose(closed);
}

main().then(() => process.exit(0), fail);

#!/usr/bin/env node
// Puppeteer (puppeteer-core) attached to a broker lease over CDP: signs in on the fixture
// site, scrapes, completes an OAuth popup and downloads a file, then waits for the lease's
// end to close its socket.
//
//   node puppeteer.js CONNECT_URL SITE_URL
'use strict';

const puppeteer = require('puppeteer-core');
const WebSocket = require('ws');
const { connectUrl, site, print, watchClose, reportClose, fail } = require('./common');
const { signInAndAuthorize } = require('./puppeteer_scenario');

async function main() {
  const closed = watchClose(WebSocket);
  const browser = await puppeteer.connect({ browserWSEndpoint: connectUrl });
  const context = await browser.createBrowserContext();
  const page = await context.newPage();

  await signInAndAuthorize(page, site, print);

  // Downloads are written in the lease's folder on the broker's host, whatever downloadPath
  // says: the browser's events tell the client the download's name, size and state.
  const cdp = await browser.target().createCDPSession();
  await cdp.send('Browser.setDownloadBehavior', {
    behavior: 'allowAndName',
    browserContextId: context.id,
    downloadPath: '/ignored/by/the/broker',
    eventsEnabled: true,
  });
  const began = new Promise((resolve) => cdp.once('Browser.downloadWillBegin', resolve));
  const done = new Promise((resolve) =>
    cdp.on('Browser.downloadProgress', (e) => e.state !== 'inProgress' && resolve(e)),
  );
  await page.goto(`${site}/download.html`);
  await page.click('#file');
  const [start, end] = await Promise.all([began, done]);
  print('download', {
    filename: start.suggestedFilename,
    url: start.url,
    guid: start.guid,
    state: end.state,
    bytes: end.receivedBytes,
  });

  browser.on('disconnected', () => print('disconnected'));
  await reportClose(closed);
}

main().then(() => process.exit(0), fail);

#!/usr/bin/env node
// Puppeteer (puppeteer-core) attached to a broker lease of stock Firefox over WebDriver BiDi:
// signs in on the fixture site, scrapes, completes an OAuth popup and downloads a file, then
// waits for the lease's end to close its socket.
//
//   node puppeteer_bidi.js CONNECT_URL SITE_URL
'use strict';

const puppeteer = require('puppeteer-core');
const WebSocket = require('ws');
const { connectUrl, site, print, watchClose, reportClose, fail } = require('./common');
const { signInAndAuthorize } = require('./puppeteer_scenario');

// Puppeteer's BiDi API has no download events (and its `downloadBehavior` names a folder, which
// the broker refuses: files land in the lease's folder on its host). Puppeteer subscribes the
// session to every browsingContext event, so the browser's download events come over the socket
// anyway: they are read off it here.
function watchDownloads() {
  const events = {};
  const waiting = [];
  const emit = WebSocket.prototype.emit;
  WebSocket.prototype.emit = function (name, ...args) {
    if (name === 'message') {
      const message = JSON.parse(String(args[0]));
      if (message.type === 'event' && message.method.startsWith('browsingContext.download')) {
        events[message.method] = message.params;
        waiting.splice(0).forEach((wake) => wake());
      }
    }
    return emit.call(this, name, ...args);
  };
  return async (method) => {
    while (!events[method]) await new Promise((wake) => waiting.push(wake));
    return events[method];
  };
}

async function main() {
  const closed = watchClose(WebSocket);
  const download = watchDownloads();
  const browser = await puppeteer.connect({ browserWSEndpoint: connectUrl, protocol: 'webDriverBiDi' });
  const context = await browser.createBrowserContext();
  const page = await context.newPage();

  await signInAndAuthorize(page, site, print);

  await page.goto(`${site}/download.html`);
  await page.click('#file');
  const [start, end] = [
    await download('browsingContext.downloadWillBegin'),
    await download('browsingContext.downloadEnd'),
  ];
  print('download', {
    filename: start.suggestedFilename,
    url: start.url,
    state: end.status,
    filepath: end.filepath,
  });

  // Refusals come back as protocol errors naming the command and why.
  const refused = await page.goto('file:///etc/passwd').then(
    () => 'navigated',
    (error) => error.message,
  );
  print('refused', { message: refused });

  browser.on('disconnected', () => print('disconnected'));
  await reportClose(closed);
}

main().then(() => process.exit(0), fail);

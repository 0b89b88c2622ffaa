// What the attached clients share: their arguments, their output (one JSON object a line) and
// the close code of their own socket, which neither library hands to its caller.
'use strict';

const [connectUrl, site] = process.argv.slice(2);
if (!connectUrl || !site) {
  process.stderr.write('usage: node <client>.js CONNECT_URL SITE_URL\n');
  process.exit(2);
}

function print(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');
}

// Both libraries use the `ws` package's WebSocket (Playwright bundles its own copy): its
// 'close' event carries the code and reason the broker closed the socket with.
function watchClose(WebSocket) {
  let seen;
  const closed = new Promise((resolve) => {
    seen = resolve;
  });
  const emit = WebSocket.prototype.emit;
  WebSocket.prototype.emit = function (name, ...args) {
    if (name === 'close') seen({ code: args[0], reason: String(args[1] ?? '') });
    return emit.call(this, name, ...args);
  };
  return closed;
}

// After the scenario: wait for the lease's end to close the socket, and say how it closed.
async function reportClose(closed, ms = 120_000) {
  print('ready');
  const timeout = new Promise((_, reject) =>
    setTimeout(() => reject(new Error(`the socket stayed open for ${ms} ms`)), ms).unref(),
  );
  const { code, reason } = await Promise.race([closed, timeout]);
  print('closed', { code, reason });
}

function fail(error) {
  print('error', { message: String(error && error.stack ? error.stack : error) });
  process.exit(1);
}

module.exports = { connectUrl, site: site.replace(/\/$/, ''), print, watchClose, reportClose, fail };

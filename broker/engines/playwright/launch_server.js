// Started by browser-broker (broker/engines/playwright/served.py) with the node and the
// playwright-core of Python Playwright's own driver: launches one browser with
// browserType.launchServer on a loopback port, at a secret path, for one attachable lease.
//
// argv: <playwright-core package dir>. stdin: one line of JSON {browser, options} (the secret
// wsPath is in it, never on the command line), then nothing: when stdin closes (the broker is
// gone) the browser is killed. stdout: one line of JSON, {wsEndpoint, pid} or {error}.
// The browser's exit ends this process; SIGTERM kills the browser first.
'use strict';

const readline = require('readline');

const core = require(process.argv[2]);
let server = null;
let ending = false;

function end(code) {
  if (ending) return;
  ending = true;
  const done = () => process.exit(code);
  if (server === null) return done();
  server.kill().then(done, done);
  setTimeout(done, 5000).unref();
}

// A call Playwright's server fails on outside its own error handling (a rejected promise of its
// dispatcher) would end the process, and with it every client's connection: logged instead.
process.on('unhandledRejection', (e) => process.stderr.write(`unhandled: ${e && e.stack}\n`));
process.on('SIGTERM', () => end(0));
process.on('SIGINT', () => end(0));

const input = readline.createInterface({ input: process.stdin });
input.once('line', async (line) => {
  let config;
  try {
    config = JSON.parse(line);
  } catch (e) {
    process.stdout.write(JSON.stringify({ error: 'bad configuration' }) + '\n');
    return process.exit(2);
  }
  try {
    server = await core[config.browser].launchServer(config.options);
  } catch (e) {
    process.stdout.write(JSON.stringify({ error: String(e && e.message) }) + '\n');
    return process.exit(1);
  }
  server.on('close', () => {
    ending = true;
    process.exit(0);
  });
  const pid = server.process() ? server.process().pid : null;
  process.stdout.write(JSON.stringify({ wsEndpoint: server.wsEndpoint(), pid }) + '\n');
  if (ending) end(0);
});
input.on('close', () => end(0));

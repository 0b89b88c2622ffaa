#!/usr/bin/env node
// Drives the browser-session broker over gRPC from Node.js: acquires a lease,
// runs browser steps under a deadline, releases the lease (twice, to show that
// Release is idempotent) and shows the error contract. Every line it prints is
// one JSON object; it exits 1 when the broker did not answer as the scenario
// expects.
//
//   node client.js --addr localhost:50051 --url https://example.com/ [scenario]
//
// Scenarios (the same as the Go example's):
//   cycle          Acquire; Run goto, get_text, evaluate; Run with a wrong token
//                  (PERMISSION_DENIED); Release; Release again (released_now=false)
//   deadline       Acquire; Run goto --url with the --timeout deadline, expecting
//                  DEADLINE_EXCEEDED; Run evaluate on the same lease; Release
//   release-twice  Acquire; Release; Release
//   wrong-token    Acquire; Run and Release with a wrong token; Release
//   login          Acquire; Run goto --url (a sign-in form: #user, #password,
//                  #submit), fill --user and --password, submit, wait for
//                  --selector and read it, storage_state; Release; Acquire a
//                  second lease that starts from that storage state; Run goto
//                  the page the first lease ended on, read --selector (it must
//                  read the same: still signed in); Release
//
// Every call carries a W3C `traceparent` header of one trace, whose id is
// printed first, so the broker's spans join that trace.
'use strict';

const crypto = require('node:crypto');
const path = require('node:path');
const { parseArgs } = require('node:util');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const { values: opts, positionals } = parseArgs({
  options: {
    addr: { type: 'string', default: 'localhost:50051' },
    url: { type: 'string', default: 'https://example.com/' },
    selector: { type: 'string', default: 'h1' },
    eval: { type: 'string', default: 'document.title' },
    timeout: { type: 'string', default: '30s' }, // deadline of each Run: 500ms, 2s, 1m
    cacert: { type: 'string' }, // CA of the broker's certificate: enables TLS
    cert: { type: 'string' }, // this client's certificate and key, for mutual TLS
    key: { type: 'string' },
    token: { type: 'string' }, // the tenant's bearer token
    user: { type: 'string', default: 'ada' }, // login: who signs in
    password: { type: 'string', default: 'secret' },
  },
  allowPositionals: true,
});
const scenario = positionals[0] ?? 'cycle';

// The .proto is loaded at run time; keepCase keeps the proto field names.
const definition = protoLoader.loadSync('browserbroker/v1/broker.proto', {
  includeDirs: [path.join(__dirname, '..', '..', 'protos')],
  keepCase: true,
  enums: String,
  longs: String,
  defaults: true,
  oneofs: true,
});
const { BrowserBrokerService } = grpc.loadPackageDefinition(definition).browserbroker.v1;
const fs = require('node:fs');

// Plaintext without --cacert; TLS with it (mutual TLS with --cert and --key).
function channelCredentials() {
  if (!opts.cacert) return grpc.credentials.createInsecure();
  const read = (file) => (file ? fs.readFileSync(file) : null);
  return grpc.credentials.createSsl(read(opts.cacert), read(opts.key), read(opts.cert));
}
const broker = new BrowserBrokerService(opts.addr, channelCredentials());

// W3C trace context by hand: one trace id for the whole scenario and a new
// span id per call. (@opentelemetry/instrumentation-grpc does this for you in
// an app that already runs the OpenTelemetry Node SDK.)
const traceId = crypto.randomBytes(16).toString('hex');
function callMetadata() {
  const md = new grpc.Metadata();
  md.set('traceparent', `00-${traceId}-${crypto.randomBytes(8).toString('hex')}-01`);
  if (opts.token) md.set('authorization', `Bearer ${opts.token}`);
  return md;
}

let failed = false; // the broker answered other than the scenario expects

function emit(event, fields) {
  console.log(JSON.stringify({ event, ...fields }));
}

// expect prints the outcome of a call as its status code name (e.g.
// "DEADLINE_EXCEEDED") and records a failure when it is not the wanted one.
function expect(rpc, err, want) {
  const code = err ? err.code : grpc.status.OK;
  const fields = { code: grpc.status[code] };
  if (err) fields.message = err.details;
  if (code !== want) {
    fields.expected = grpc.status[want];
    failed = true;
  }
  emit(rpc, fields);
}

function parseDuration(text) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(text);
  if (!m) throw new Error(`bad duration ${text}: use e.g. 500ms, 2s, 1m`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60000 }[m[2]];
}

// A server may end a call whose deadline passed with RST_STREAM(CANCEL) a moment
// before the client's own timer fires; gRPC's HTTP/2 protocol notes ask clients
// to report that as DEADLINE_EXCEEDED (grpc-go does), grpc-js does not.
function withDeadline(err, deadline) {
  if (err.code === grpc.status.CANCELLED && Date.now() >= deadline) {
    err.code = grpc.status.DEADLINE_EXCEEDED;
  }
  return err;
}

function unary(method, request, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    broker[method](request, callMetadata(), { deadline }, (err, resp) =>
      err ? reject(withDeadline(err, deadline)) : resolve(resp),
    );
  });
}

async function acquire(options = {}) {
  try {
    // The deadline bounds the wait in the broker's queue.
    const lease = await unary('Acquire', { labels: { client: 'node-example' }, ...options }, 60000);
    emit('Acquire', { code: 'OK', lease_id: lease.lease_id, engine: lease.engine, warm: lease.warm });
    return lease;
  } catch (err) {
    expect('Acquire', err, grpc.status.OK);
    return null;
  }
}

// run prints one line per step result and resolves to the call's error (null: OK);
// `results`, when given, collects the step results.
async function run(lease, token, timeoutMs, steps, results = []) {
  const deadline = Date.now() + timeoutMs;
  const call = broker.Run({ lease_id: lease.lease_id, token, steps }, callMetadata(), { deadline });
  try {
    for await (const { step } of call) {
      emit('step', {
        index: step.index, action: step.action, ok: step.ok, error: step.error?.message ?? '',
        url: step.url, http_status: step.http_status, text: step.text, json: step.json,
      });
      if (!step.ok) failed = true;
      results.push(step);
    }
    return null;
  } catch (err) {
    return withDeadline(err, deadline);
  }
}

async function release(lease, token) {
  const resp = await unary('Release', { lease_id: lease.lease_id, token }, 30000);
  emit('Release', { code: 'OK', released_now: resp.released_now, reason: resp.reason });
  return resp;
}

// releaseTwice shows that Release is idempotent: the second call answers OK
// with released_now=false and the reason of the first.
async function releaseTwice(lease) {
  try {
    const first = await release(lease, lease.token);
    const second = await release(lease, lease.token);
    if (!first.released_now || second.released_now || first.reason !== second.reason) failed = true;
  } catch (err) {
    expect('Release', err, grpc.status.OK);
  }
}

const gotoStep = (url) => ({ goto: { url } });
const getTextStep = (selector) => ({ get_text: { selector } });
const evaluateStep = (expression) => ({ evaluate: { expression } });

const scenarios = {
  async cycle() {
    const lease = await acquire();
    if (!lease) return;
    const timeout = parseDuration(opts.timeout);
    const steps = [gotoStep(opts.url), getTextStep(opts.selector), evaluateStep(opts.eval)];
    expect('Run', await run(lease, lease.token, timeout, steps), grpc.status.OK);
    expect('Run', await run(lease, 'wrong-token', timeout, [evaluateStep('1')]), grpc.status.PERMISSION_DENIED);
    await releaseTwice(lease);
  },
  async deadline() {
    const lease = await acquire();
    if (!lease) return;
    // The broker stops the navigation in the browser when the deadline passes
    // and, with the default on_cancel (ON_CANCEL_KEEP_LEASE), keeps the lease
    // with a fresh page, so the next Run works.
    const err = await run(lease, lease.token, parseDuration(opts.timeout), [gotoStep(opts.url)]);
    expect('Run', err, grpc.status.DEADLINE_EXCEEDED);
    expect('Run', await run(lease, lease.token, 30000, [evaluateStep(opts.eval)]), grpc.status.OK);
    await release(lease, lease.token).catch((e) => expect('Release', e, grpc.status.OK));
  },
  // Signs in through a form in one lease, keeps its storage state (cookies and
  // local storage, as Playwright's JSON) and starts a second lease from it.
  async login() {
    const first = await acquire();
    if (!first) return;
    const timeout = parseDuration(opts.timeout);
    const results = [];
    const err = await run(first, first.token, timeout, [
      gotoStep(opts.url),
      { fill: { selector: '#user', value: opts.user } },
      { fill: { selector: '#password', value: opts.password } },
      { click: { selector: '#submit' } },
      { wait_for_selector: { selector: opts.selector } },
      getTextStep(opts.selector),
      { storage_state: {} },
    ], results);
    expect('Run', err, grpc.status.OK);
    await release(first, first.token).catch((e) => expect('Release', e, grpc.status.OK));
    if (err || results.length !== 7 || failed) {
      failed = true;
      return;
    }
    const signedIn = results[5];
    const state = results[6].data; // a Buffer of JSON
    const cookies = JSON.parse(state.toString()).cookies.map((c) => c.name);
    emit('state', { bytes: state.length, cookies });

    const second = await acquire({ context: { storage_state: state } });
    if (!second) return;
    const again = [];
    const err2 = await run(second, second.token, timeout,
      [gotoStep(signedIn.url), getTextStep(opts.selector)], again);
    expect('Run', err2, grpc.status.OK);
    if (!err2 && again.length === 2) {
      emit('signed_in', { text: again[1].text, same: again[1].text === signedIn.text });
    }
    if (err2 || again.length !== 2 || again[1].text !== signedIn.text) failed = true;
    await release(second, second.token).catch((e) => expect('Release', e, grpc.status.OK));
  },
  async 'release-twice'() {
    const lease = await acquire();
    if (lease) await releaseTwice(lease);
  },
  async 'wrong-token'() {
    const lease = await acquire();
    if (!lease) return;
    const timeout = parseDuration(opts.timeout);
    expect('Run', await run(lease, 'wrong-token', timeout, [evaluateStep('1')]), grpc.status.PERMISSION_DENIED);
    const err = await release(lease, 'wrong-token').then(() => null, (e) => e);
    expect('Release', err, grpc.status.PERMISSION_DENIED);
    await release(lease, lease.token).catch((e) => expect('Release', e, grpc.status.OK));
  },
};

async function main() {
  if (!(scenario in scenarios)) {
    console.error(`usage: node client.js [--addr HOST:PORT] [--url URL] [--selector CSS] [--eval JS] [--timeout 30s] [--cacert CA.pem [--cert CERT.pem --key KEY.pem]] [--token TOKEN] [--user NAME --password SECRET] [${Object.keys(scenarios).join('|')}]`);
    process.exit(2);
  }
  emit('trace', { trace_id: traceId });
  await scenarios[scenario]();
  broker.close();
  emit('done', { ok: !failed });
  process.exitCode = failed ? 1 : 0;
}

main();

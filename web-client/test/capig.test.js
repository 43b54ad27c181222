// Unit tests of capig.js with node's own test runner and fakes of the browser APIs:
//   node --test web-client/test/
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const createClient = require('../capig.js');

// A fake WebSocket: records what is sent; the test opens, answers and closes it.
class FakeSocket {
  constructor(url) {
    this.url = url;
    this.sent = [];
    FakeSocket.all.push(this);
  }
  send(text) { this.sent.push(JSON.parse(text)); }
  open() { this.onopen(); }
  reply(obj) { this.onmessage({ data: JSON.stringify(obj) }); }
  close() { this.onclose(); }
}
FakeSocket.all = [];

// Timers run when the test says so.
function clock() {
  const due = [];
  return {
    setTimeout(fn, ms) { due.push({ fn, ms }); return due.length; },
    run() { while (due.length) due.shift().fn(); },
    count() { return due.length; },
  };
}

function page(opts = {}) {
  FakeSocket.all = [];
  const t = clock();
  const listeners = {};
  const storage = opts.storage || new Map();
  const window = {
    location: { href: 'https://www.shop.example/product?x=1' },
    addEventListener(name, fn) { listeners[name] = fn; },
    fbq: opts.fbq,
  };
  const document = {
    cookie: opts.cookie || '_fbp=fb.1.1700000000000.1234567890; other=1',
    referrer: 'https://search.example/',
    visibilityState: 'visible',
    addEventListener(name, fn) { listeners['doc:' + name] = fn; },
  };
  const beacons = [];
  const env = {
    window,
    document,
    WebSocket: opts.noWebSocket ? undefined : FakeSocket,
    navigator: {
      sendBeacon(url, body) {
        if (opts.beaconFails) return false;
        if (opts.sendBeacon && !opts.sendBeacon(url, body)) return false;
        beacons.push({ url, body, events: JSON.parse(body) });
        return true;
      },
    },
    fetch: opts.fetch,
    setTimeout: t.setTimeout,
    sessionStorage: { getItem: (k) => storage.get(k) ?? null, setItem: (k, v) => storage.set(k, v), removeItem: (k) => storage.delete(k) },
    crypto: { randomUUID: (() => { let n = 0; return () => `id-${++n}`; })() },
    now: () => 1_700_000_123_456,
    endpoint: 'https://capig.shop.example',
    debug: false,
  };
  const client = createClient(env);
  const fbq = client.install();
  return { window, document, fbq, client, clock: t, beacons, storage, listeners };
}

// The pixel's own base-code stub, before fbevents.js loaded.
function pixelStub() {
  const n = function () { n.callMethod ? n.callMethod.apply(n, arguments) : n.queue.push(arguments); };
  n.push = n; n.loaded = true; n.version = '2.0'; n.queue = [];
  return n;
}

test('track gets an eventID that the pixel and capig share', () => {
  const stub = pixelStub();
  const p = page({ fbq: stub });
  p.fbq('init', '111', { em: 'jane@example.com' });
  p.fbq('track', 'Purchase', { value: 10, currency: 'EUR' });
  const queued = p.window.fbq.queue;
  assert.equal(queued.length, 2);
  assert.deepEqual(queued[1].slice(0, 2), ['track', 'Purchase']);
  assert.equal(queued[1][3].eventID, 'id-1');
  const e = p.client.pending()[0].e;
  assert.equal(e.event_id, 'id-1');
  assert.equal(e.pixel_id, '111');
  assert.equal(e.event_name, 'Purchase');
  assert.equal(e.event_time, 1_700_000_123);
  assert.equal(e.event_source_url, 'https://www.shop.example/product?x=1');
  assert.equal(e.referrer_url, 'https://search.example/');
  assert.deepEqual(e.custom_data, { value: 10, currency: 'EUR' });
  assert.equal(e.user_data.em, 'jane@example.com');
  assert.equal(e.user_data.fbp, 'fb.1.1700000000000.1234567890');
});

test('an eventID the page chose is kept, and trackSingle goes to one pixel', () => {
  const p = page({ fbq: pixelStub() });
  p.fbq('init', '111');
  p.fbq('init', '222');
  p.fbq('track', 'Lead', {}, { eventID: 'mine' });
  assert.deepEqual(p.client.pending().map((x) => [x.e.pixel_id, x.e.event_id]), [['111', 'mine'], ['222', 'mine']]);
  p.fbq('trackSingleCustom', '222', 'Quiz', { score: 3 });
  const last = p.client.pending().at(-1).e;
  assert.deepEqual([last.pixel_id, last.event_name, last.custom_data.score], ['222', 'Quiz', 3]);
  assert.equal(p.window.fbq.queue.at(-1)[4].eventID, last.event_id);
});

test('calls queued before capig.js loaded are captured with their ids added in place', () => {
  const stub = pixelStub();
  stub('init', '111');
  stub('track', 'PageView');
  const p = page({ fbq: stub });
  assert.equal(p.window.fbq.queue[1][3].eventID, 'id-1');
  assert.equal(p.client.pending()[0].e.event_name, 'PageView');
});

test('once fbevents.js loaded, calls go to its callMethod', () => {
  const calls = [];
  const stub = pixelStub();
  const p = page({ fbq: stub });
  p.window.fbq.callMethod = function () { calls.push([...arguments]); };
  p.fbq('init', '111');
  p.fbq('track', 'ViewContent');
  assert.equal(calls.length, 2);
  assert.equal(calls[1][3].eventID, p.client.pending()[0].e.event_id);
  // Loaded on the original stub instead (fbevents attached to _fbq): forwarded there.
  const stub2 = pixelStub();
  const got = [];
  stub2.callMethod = function () { got.push([...arguments]); };
  const q = page({ fbq: stub2 });
  q.fbq('track', 'Search');
  assert.equal(got.length, 1);
});

test('when the pixel ran first and took the queue, its state names the pixels', () => {
  const stub = pixelStub();
  const sent = [];
  const initialized = [];
  stub.callMethod = function (cmd, id) { sent.push([...arguments]); if (cmd === 'init') initialized.push({ id: String(id) }); };
  stub.getState = () => ({ pixels: initialized });
  stub('init', '111');
  stub('track', 'PageView');
  const p = page({ fbq: stub });
  assert.equal(p.client.pending().length, 0, 'what the pixel sent before capig.js ran is not mirrored');
  p.fbq('track', 'Purchase', { value: 5, currency: 'EUR' });
  const e = p.client.pending().map((x) => x.e);
  assert.deepEqual(e.map((x) => [x.pixel_id, x.event_name]), [['111', 'Purchase']]);
  assert.equal(sent.at(-1)[3].eventID, e[0].event_id, 'the pixel sends the same id');
});

test('without any pixel code capig.js stands in for the stub', () => {
  const p = page({ fbq: undefined });
  assert.equal(typeof p.window.fbq, 'function');
  assert.equal(p.window._fbq, p.window.fbq);
  p.fbq('init', '9');
  assert.equal(p.window.fbq.queue.length, 1);
});

test('events go over one WebSocket, acks drop them, a reconnect resends the rest', () => {
  const p = page({ fbq: pixelStub() });
  p.fbq('init', '111');
  p.fbq('track', 'A');
  p.fbq('track', 'B');
  p.clock.run();
  assert.equal(FakeSocket.all.length, 1);
  const ws = FakeSocket.all[0];
  assert.equal(ws.url, 'wss://capig.shop.example/capig/ws');
  ws.open();
  assert.equal(ws.sent.length, 1);
  assert.deepEqual(ws.sent[0].map((e) => e.event_name), ['A', 'B']);
  p.fbq('track', 'C');
  p.clock.run();
  assert.equal(ws.sent.length, 1, 'one message in flight at a time');
  ws.reply({ stored: ['id-1'], rejected: [{ event_id: 'id-2', reason: 'blocked_event' }] });
  p.clock.run();
  assert.deepEqual(ws.sent[1].map((e) => e.event_name), ['C']);
  ws.close();
  p.clock.run();
  const again = FakeSocket.all[1];
  again.open();
  assert.deepEqual(again.sent[0].map((e) => e.event_name), ['C'], 'the unacknowledged one is resent');
  again.reply({ stored: ['id-3'], rejected: [] });
  assert.equal(p.client.pending().length, 0);
});

test('a refusal (spool full, rate limit) keeps the events for later', () => {
  const p = page({ fbq: pixelStub() });
  p.fbq('init', '111');
  p.fbq('track', 'A');
  p.clock.run();
  FakeSocket.all[0].open();
  FakeSocket.all[0].reply({ refused: 'spool_full', message: 'retry later' });
  assert.equal(p.client.pending().length, 1);
  p.clock.run();
  assert.equal(FakeSocket.all[0].sent.length, 2);
});

test('after consent revoke nothing is sent until grant', () => {
  const p = page({ fbq: pixelStub() });
  p.fbq('init', '111');
  p.fbq('consent', 'revoke');
  p.fbq('track', 'Hidden');
  assert.equal(p.client.pending().length, 0);
  assert.equal(p.window.fbq.queue.at(-1)[3].eventID.length > 0, true, 'the pixel still gets its call');
  p.fbq('consent', 'grant');
  p.fbq('track', 'Visible');
  assert.deepEqual(p.client.pending().map((x) => x.e.event_name), ['Visible']);
});

test('data processing options travel with each event', () => {
  const p = page({ fbq: pixelStub() });
  p.fbq('dataProcessingOptions', ['LDU'], 1, 1000);
  p.fbq('init', '111');
  p.fbq('track', 'A');
  const e = p.client.pending()[0].e;
  assert.deepEqual([e.data_processing_options, e.data_processing_options_country, e.data_processing_options_state], [['LDU'], 1, 1000]);
});

test('without WebSocket, or when the page is hidden, events go by sendBeacon', () => {
  const p = page({ fbq: pixelStub(), noWebSocket: true });
  p.fbq('init', '111');
  p.fbq('track', 'A');
  p.clock.run();
  assert.equal(p.beacons.length, 1);
  assert.equal(p.beacons[0].url, 'https://capig.shop.example/capig/events');
  assert.equal(p.client.pending().length, 0);

  const q = page({ fbq: pixelStub() });
  q.fbq('init', '111');
  q.fbq('track', 'Leaving');
  q.document.visibilityState = 'hidden';
  q.listeners['doc:visibilitychange']();
  assert.deepEqual(q.beacons[0].events.map((e) => e.event_name), ['Leaving']);
});

test('what could not be sent survives a same-tab navigation and is resent once', () => {
  const storage = new Map();
  const p = page({ fbq: pixelStub(), storage, beaconFails: true });
  p.fbq('init', '111');
  p.fbq('track', 'Checkout');
  p.listeners.pagehide();
  assert.ok(storage.get('capig.pending'));
  const next = page({ fbq: pixelStub(), storage });
  assert.deepEqual(next.client.pending().map((x) => x.e.event_name), ['Checkout']);
  assert.equal(storage.get('capig.pending'), undefined, 'taken once');
});

test('nothing capig does throws into the page', () => {
  const p = page({ fbq: pixelStub() });
  assert.doesNotThrow(() => p.fbq());
  assert.doesNotThrow(() => p.fbq('track'));
  assert.doesNotThrow(() => p.fbq('init', { weird: true }, 'x'));
  assert.doesNotThrow(() => p.client.answer('not json'));
  const bad = page({ fbq: pixelStub() });
  bad.document.cookie = undefined;
  assert.doesNotThrow(() => bad.fbq('track', 'X'));
});

// A fetch that records keepalive posts; the test settles each with `answer`.
function fakeFetch() {
  const calls = [];
  const fetch = (url, init) => new Promise((resolve, reject) => {
    calls.push({ url, init, events: JSON.parse(init.body), answer: (status) => (status ? resolve({ ok: status < 300, status }) : reject(new TypeError('Failed to fetch'))) });
  });
  return { fetch, calls };
}

// One A acknowledged, B written to the socket and not answered yet, C not sent at all.
function threeEvents(opts = {}) {
  const p = page({ fbq: pixelStub(), ...opts });
  p.fbq('init', '111');
  p.fbq('track', 'A');
  p.clock.run();
  const ws = FakeSocket.all[0];
  ws.open();
  ws.reply({ stored: ['id-1'], rejected: [] });
  p.fbq('track', 'B');
  p.clock.run();
  p.fbq('track', 'C');
  p.clock.run();
  assert.deepEqual(ws.sent.map((m) => m.map((e) => e.event_name)), [['A'], ['B']]);
  return { p, ws };
}

test('on pagehide every unacknowledged event goes by sendBeacon, those on the socket too', () => {
  const { p, ws } = threeEvents();
  p.listeners.pagehide();
  assert.equal(p.beacons.length, 1);
  assert.equal(p.beacons[0].url, 'https://capig.shop.example/capig/events');
  assert.deepEqual(p.beacons[0].events.map((e) => e.event_name), ['B', 'C'], 'not A: it was acknowledged');
  assert.equal(p.client.pending().length, 0);
  // visibilitychange → hidden follows pagehide on a navigation: nothing twice.
  p.document.visibilityState = 'hidden';
  p.listeners['doc:visibilitychange']();
  assert.equal(p.beacons.length, 1);
  assert.equal(p.storage.get('capig.pending'), '[]', 'nothing left for the next page');
  // The socket's late answer (the page was only hidden) changes nothing, and nothing
  // is sent again when the page comes back.
  ws.reply({ stored: ['id-2'], rejected: [] });
  p.document.visibilityState = 'visible';
  p.listeners['doc:visibilitychange']();
  p.clock.run();
  assert.equal(ws.sent.length, 2);
  assert.equal(p.beacons.length, 1);
});

test('a tab that is only hidden hands over its unacknowledged events the same way', () => {
  const { p, ws } = threeEvents();
  p.document.visibilityState = 'hidden';
  p.listeners['doc:visibilitychange']();
  assert.deepEqual(p.beacons[0].events.map((e) => e.event_name), ['B', 'C']);
  // While hidden, a new event goes by sendBeacon, and only it.
  p.fbq('track', 'D');
  p.clock.run();
  assert.deepEqual(p.beacons.map((b) => b.events.map((e) => e.event_name)), [['B', 'C'], ['D']]);
  // Back, the socket carries on: nothing already handed over is sent again.
  p.document.visibilityState = 'visible';
  p.listeners['doc:visibilitychange']();
  p.fbq('track', 'E');
  p.clock.run();
  ws.reply({ stored: ['id-2'], rejected: [] });
  p.clock.run();
  assert.deepEqual(ws.sent.map((m) => m.map((e) => e.event_name)), [['A'], ['B'], ['E']]);
});

test('nothing acknowledged is handed over again', () => {
  const { p, ws } = threeEvents();
  ws.reply({ stored: ['id-2'], rejected: [] });
  p.clock.run();
  ws.reply({ stored: [], rejected: [{ event_id: 'id-3', reason: 'duplicate' }] });
  p.clock.run();
  assert.equal(p.client.pending().length, 0);
  p.listeners.pagehide();
  assert.deepEqual(p.beacons, []);
  assert.equal(p.storage.get('capig.pending'), '[]');
});

test('what sendBeacon refuses goes by fetch with keepalive, and stays pending until answered', async () => {
  const f = fakeFetch();
  const { p } = threeEvents({ beaconFails: true, fetch: f.fetch });
  p.listeners.pagehide();
  assert.equal(f.calls.length, 1);
  const c = f.calls[0];
  assert.equal(c.url, 'https://capig.shop.example/capig/events');
  assert.equal(c.init.keepalive, true);
  assert.equal(c.init.method, 'POST');
  assert.equal(c.init.headers['Content-Type'], 'text/plain');
  assert.deepEqual(c.events.map((e) => e.event_name), ['B', 'C']);
  // Kept for the next page of the site, in case the fetch does not make it.
  assert.deepEqual(JSON.parse(p.storage.get('capig.pending')).map((e) => e.event_name), ['B', 'C']);
  // Not posted twice while the first post is under way.
  p.document.visibilityState = 'hidden';
  p.listeners['doc:visibilitychange']();
  assert.equal(f.calls.length, 1);
  c.answer(200);
  await new Promise((r) => setImmediate(r));
  assert.equal(p.client.pending().length, 0);

  // A refused fetch (the browser's keepalive quota, the network) keeps them.
  const g = fakeFetch();
  const q = threeEvents({ beaconFails: true, fetch: g.fetch }).p;
  q.listeners.pagehide();
  g.calls[0].answer(0);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(q.client.pending().map((x) => x.e.event_name), ['B', 'C']);
});

test('sendBeacon carries at most 60,000 bytes per departure, in bodies of at most 100 events; the rest goes by fetch', () => {
  // A browser like Chromium: 64 KiB of keepalive bodies in flight per page.
  let inflight = 0;
  const quota = (url, body) => {
    const n = Buffer.byteLength(body);
    if (inflight + n > 65536) return false;
    inflight += n;
    return true;
  };
  const f = fakeFetch();
  const p = page({ fbq: pixelStub(), noWebSocket: true, sendBeacon: quota, fetch: f.fetch });
  p.fbq('init', '111');
  // 300 events of about 700 bytes, with multi-byte characters (counted as UTF-8 bytes).
  for (let i = 0; i < 300; i++) p.client.capture(['track', 'Big', { note: 'é€'.repeat(100), i }]);
  assert.equal(p.client.pending().length, 300);
  p.listeners.pagehide();
  const beaconed = p.beacons.flatMap((b) => b.events.map((e) => e.custom_data.i));
  const fetched = f.calls.flatMap((c) => c.events.map((e) => e.custom_data.i));
  for (const b of p.beacons) assert.ok(b.events.length <= 100);
  for (const c of f.calls) {
    assert.ok(c.events.length <= 100);
    assert.ok(Buffer.byteLength(c.init.body) <= 60000);
  }
  const total = p.beacons.reduce((n, b) => n + Buffer.byteLength(b.body), 0);
  assert.ok(total <= 60000, `${total} bytes by sendBeacon`);
  assert.ok(beaconed.length > 50, 'sendBeacon took what fits');
  assert.ok(fetched.length > 0, 'the rest went by fetch');
  assert.deepEqual([...beaconed, ...fetched].sort((a, b) => a - b), [...Array(300).keys()], 'each event once');
  assert.equal(p.client.pending().length, fetched.length, 'the fetched ones pending until answered');
});

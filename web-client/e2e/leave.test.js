// A shopper who leaves at once: in Chromium, open `capig demo`'s shop, wait until the
// network is idle, click "Place order" and leave 0, 10, 50 or 200 ms later, for a page
// of another site (a tiny server on another port, reached as `localhost`: no capig.js,
// no sessionStorage) or for another page of the shop (which loads capig.js), with the
// WebSocket and without one (window.WebSocket removed before capig.js runs: its
// sendBeacon path). Every combination is repeated, because a loss is intermittent;
// then every event the pixel fired must reach the CAPI simulator exactly once.
//   node --test web-client/e2e/      (CAPIG_BIN: the capig binary, default target/debug/capig)
// LEAVE_REPEAT=N sets the repetitions per combination (default 4: 64 visits).
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { sleep, until, freePort, startDemo, json, launch } = require('./support');

const PIXEL = '1234567890123456';
const DELAYS = [0, 10, 50, 200];
const REPEAT = Number(process.env.LEAVE_REPEAT || 4);

test('a shopper who leaves right after "Place order" loses no server copy', { timeout: 300000 }, async () => {
  const demo = await startDemo();
  // Another site: a page that knows nothing of capig.
  const elsewhere = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end('<!doctype html><title>elsewhere</title><p>another site</p>');
  });
  const otherPort = await freePort();
  await new Promise((r) => elsewhere.listen(otherPort, '127.0.0.1', r));
  const browser = await launch();
  const shop = `http://127.0.0.1:${demo.port}/`;
  const visits = [];
  const errors = [];
  try {
    const withWs = await browser.newContext();
    const withoutWs = await browser.newContext();
    await withoutWs.addInitScript(() => {
      Object.defineProperty(window, 'WebSocket', { value: undefined, configurable: true, writable: true });
    });
    const plan = [];
    for (let r = 0; r < REPEAT; r++) {
      for (const ws of [true, false]) {
        for (const to of ['off-site', 'same-site']) {
          for (const delay of DELAYS) plan.push({ ws, to, delay });
        }
      }
    }
    let previous = null;
    for (const [n, v] of plan.entries()) {
      // A fresh tab each time: its own sessionStorage, so that one visit never carries
      // another's leftovers. The previous tab is closed only now, a visit later.
      const page = await (v.ws ? withWs : withoutWs).newPage();
      if (previous) await previous.close();
      previous = page;
      page.on('pageerror', (e) => errors.push(String(e)));
      const fired = [];
      page.on('request', (req) => {
        if (!req.url().endsWith('/demo/pixel')) return;
        try {
          const b = JSON.parse(req.postData());
          fired.push(`${b.event_name}:${b.event_id}`);
        } catch (e) {}
      });
      const visit = { n, ...v, fired };
      visits.push(visit);
      await page.goto(`${shop}?visit=${n}`, { waitUntil: 'networkidle' });
      await page.click('#purchase');
      if (v.delay) await sleep(v.delay);
      const next = v.to === 'off-site' ? `http://localhost:${otherPort}/?from=${n}` : `${shop}?next=${n}`;
      await page.goto(next, { waitUntil: v.to === 'same-site' ? 'networkidle' : 'load' });
    }
    if (previous) await previous.close();

    // Every (event_name, event_id) the pixel recorded must reach the simulator once.
    const status = `http://127.0.0.1:${demo.port}/demo/status.json`;
    const key = (name, id) => `${name}:${id}`;
    let st;
    try {
      await until('both channels to match', async () => {
        st = await json(status);
        return st.matched === st.browser_events ? st : null;
      }, 15000);
    } catch (e) { /* reported below, with what is missing */ }
    const sim = await json(`${demo.sim}/__sim/events?pixel=${PIXEL}`);
    const delivered = new Map();
    for (const { event: e } of sim) delivered.set(key(e.event_name, e.event_id), (delivered.get(key(e.event_name, e.event_id)) || 0) + 1);
    // What the pixel fired, as the test saw its requests (the demo's status lists only
    // the newest 200): it must be what the demo recorded.
    const all = visits.flatMap((v) => v.fired);
    assert.equal(all.length, st.browser_events, 'the test saw every pixel request the demo recorded');
    const missing = all.filter((k) => !delivered.has(k));
    const twice = [...delivered].filter(([, c]) => c > 1).map(([k]) => k);
    const where = (k) => {
      const v = visits.find((x) => x.fired.includes(k));
      return v ? `${k} (visit ${v.n}: ${v.ws ? 'WebSocket' : 'no WebSocket'}, ${v.to}, ${v.delay} ms)` : k;
    };
    const purchases = all.filter((k) => k.startsWith('Purchase:')).length;
    console.log(`# ${plan.length} visits: the pixel fired ${all.length} events (${purchases} Purchases), ` +
      `capig delivered ${sim.length}; missing ${missing.length}, delivered twice ${twice.length}`);
    assert.ok(purchases > plan.length / 2, 'the pixel fired a Purchase per visit');
    assert.deepEqual(missing.map(where), [], 'every event the pixel fired reached Meta through capig');
    assert.deepEqual(twice.map(where), [], 'no event reached Meta twice');
    assert.equal(sim.length, all.length, 'nothing else reached Meta');
    assert.deepEqual(errors, [], 'capig.js threw nothing into the page');
  } finally {
    await browser.close();
    elsewhere.close();
    await demo.stop();
  }
});

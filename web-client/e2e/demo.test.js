// End to end in a real browser: Debian's Chromium driven by playwright-core clicks
// through `capig demo`'s shop; the CAPI simulator must receive every event the pixel
// fired, with the same event_id, fbp set, user data hashed and the right page URL. The
// shop is reached through a TCP proxy that the test cuts mid-way (the WebSocket drops:
// nothing may be lost), and consent is revoked (nothing may be sent).
//   node --test web-client/e2e/      (CAPIG_BIN: the capig binary, default target/debug/capig)
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { ARTIFACTS, sleep, until, freePort, startDemo, json, launch } = require('./support');

test('the shop funnel reaches Meta through capig with the pixel\'s event ids', { timeout: 120000 }, async () => {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  // The shop is reached through a TCP proxy whose open connections the test can cut;
  // its port is chosen before capig starts, so that its origin can be allowed.
  const placeholder = await freePort();
  const demo = await startDemo(`http://127.0.0.1:${placeholder}`);
  let connections = 0;
  const prx = await new Promise((resolve, reject) => {
    const sockets = new Set();
    const server = net.createServer((c) => {
      connections++;
      const up = net.connect(demo.port, '127.0.0.1');
      sockets.add(c); sockets.add(up);
      c.pipe(up); up.pipe(c);
      const end = () => { c.destroy(); up.destroy(); sockets.delete(c); sockets.delete(up); };
      c.on('error', end); up.on('error', end); c.on('close', end); up.on('close', end);
    });
    server.on('error', reject);
    server.listen(placeholder, '127.0.0.1', () => resolve({
      cut() { for (const s of sockets) s.destroy(); sockets.clear(); },
      close() { this.cut(); server.close(); },
    }));
  });
  const shop = `http://127.0.0.1:${placeholder}/`;
  const browser = await launch();
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(shop);
    await until('capig.js to wrap fbq', () => page.evaluate(() => !!(window.fbq && window.fbq.capig)));
    const click = async (sel) => { await page.click(sel); await sleep(150); };
    await click('.card[data-id="tee-01"] .view');
    await click('.card[data-id="tee-01"] .add');
    await page.fill('#q', 'mug');
    await click('#search');
    // The WebSocket (and every other connection through the proxy) is cut mid-way.
    prx.cut();
    const before = connections;
    await click('.card[data-id="mug-02"] .add');
    await click('#checkout');
    await click('#signup');
    await click('#purchase');

    const status = `http://127.0.0.1:${demo.port}/demo/status.json`;
    const s = await until('both channels to match', async () => {
      const st = await json(status);
      return st.browser_events >= 8 && st.matched === st.browser_events && st.capig_events === st.browser_events ? st : null;
    }, 30000);
    assert.equal(s.browser_events, 8, JSON.stringify(s));
    assert.ok(connections > before, 'capig.js reconnected after the cut');

    const events = await json(`${demo.sim}/__sim/events?pixel=1234567890123456`);
    const names = events.map((e) => e.event.event_name).sort();
    assert.deepEqual(names, ['AddToCart', 'AddToCart', 'CompleteRegistration', 'InitiateCheckout', 'PageView', 'Purchase', 'Search', 'ViewContent']);
    const ids = new Set(events.map((e) => e.event.event_id));
    assert.equal(ids.size, 8, 'one delivery per event');
    for (const { event: e } of events) {
      assert.match(e.user_data.fbp, /^fb\.1\.\d{13}\.\d+$/, 'fbp from the pixel cookie');
      assert.equal(e.event_source_url, shop);
      assert.equal(e.user_data.client_user_agent.includes('Chrome'), true);
      assert.equal(e.user_data.client_ip_address, '127.0.0.1');
    }
    const purchase = events.find((e) => e.event.event_name === 'Purchase').event;
    assert.match(purchase.user_data.em, /^[0-9a-f]{64}$/, 'the email hashed');
    assert.match(purchase.user_data.ph, /^[0-9a-f]{64}$/, 'the phone hashed');
    assert.equal(JSON.stringify(events).includes('jane.doe@example.com'), false, 'no clear-text email reached Meta');
    assert.equal(purchase.custom_data.currency, 'EUR');
    assert.deepEqual(errors, [], 'capig.js threw nothing into the page');

    await page.screenshot({ path: path.join(ARTIFACTS, 'shop.png'), fullPage: true });
    const statusPage = await browser.newPage();
    await statusPage.goto(`http://127.0.0.1:${demo.port}/demo/status`);
    await until('the status page to fill', () => statusPage.evaluate(() => document.getElementById('matched').textContent === '8'));
    await statusPage.screenshot({ path: path.join(ARTIFACTS, 'status.png'), fullPage: true });

    // Consent revoked: neither the pixel nor capig sends anything.
    await page.evaluate(() => { fbq('consent', 'revoke'); fbq('track', 'Lead', { note: 'revoked' }); });
    await sleep(1500);
    const after = await json(`${demo.sim}/__sim/events?pixel=1234567890123456`);
    assert.equal(after.filter((e) => e.event.event_name === 'Lead').length, 0, 'nothing sent after revoke');
    await page.evaluate(() => { fbq('consent', 'grant'); fbq('track', 'Lead', { note: 'granted' }); });
    await until('the event after grant', async () => (await json(`${demo.sim}/__sim/events?pixel=1234567890123456`)).some((e) => e.event.event_name === 'Lead'));
  } finally {
    await browser.close();
    prx.close();
    await demo.stop();
  }
});

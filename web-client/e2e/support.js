// Helpers shared by the end-to-end tests: starting `capig demo`, waiting, the browser.
// (Not a test file: node's runner picks only *.test.js here.)
'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const ROOT = path.resolve(__dirname, '../..');
const BIN = process.env.CAPIG_BIN || path.join(ROOT, 'target/debug/capig');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = path.join(__dirname, 'artifacts');

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

async function until(what, fn, ms = 20000) {
  const start = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

async function freePort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const port = s.address().port;
  await new Promise((r) => s.close(r));
  return port;
}

// `capig demo` on a free port; `origins` are more page origins it allows.
async function startDemo(...origins) {
  const port = await freePort();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'capig-e2e-'));
  const args = ['demo', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir];
  for (const o of origins) args.push('--origin', o);
  const child = spawn(BIN, args, {
    env: { ...process.env, CAPIG_LOG: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  const sim = await until('the demo to start', () => {
    const m = out.match(/simulator:\s+(\S+)\/__sim\/stats/);
    return m && out.includes('shop:') ? m[1] : null;
  });
  return {
    port, sim, child, dataDir, out: () => out,
    async stop() {
      child.kill('SIGINT');
      await new Promise((r) => child.on('exit', r));
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function json(url) {
  const r = await fetch(url);
  return r.json();
}

function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-dev-shm-usage'],
  });
}

module.exports = { ROOT, BIN, CHROMIUM, ARTIFACTS, sleep, until, freePort, startDemo, json, launch };

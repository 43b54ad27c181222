/*! capig.js: mirrors every Meta Pixel event to a capig gateway, with the same event id,
 * so Meta receives both copies and deduplicates them. Put it after the pixel base code:
 *   <script src="https://capig.shop.example/capig/client.js" async></script>
 * Options (data- attributes on the tag): data-endpoint="https://capig.shop.example"
 * (default: where this file came from), data-debug (log to the console).
 * It never throws into the page: whatever goes wrong with capig, the pixel carries on. */
(function (root) {
  'use strict';

  var STORE = 'capig.pending';
  var MAX_PENDING = 500;
  var MAX_BATCH = 100;
  // Chromium lets a page have 64 KiB of keepalive bodies (sendBeacon and fetch with
  // keepalive) in flight at once, the pixel's own beacons included: what one departure
  // hands over stays under this, in bodies of at most MAX_BATCH events.
  var BEACON_BYTES = 60000;

  // Everything the client touches of the browser comes in `env`, so that tests can run
  // it in node with fakes: window, document, WebSocket, navigator, fetch, setTimeout,
  // clearTimeout, sessionStorage, crypto, now, endpoint, debug.
  function createClient(env) {
    var w = env.window;
    var pixels = [];          // ids from fbq('init')
    var userData = {};        // pixel id -> advanced matching values
    var dpo = null;           // [options, country, state]
    var revoked = false;
    var pending = [];         // {e: event, sent: on the socket, post: in a fetch}
    var ws = null;
    var wsOpen = false;
    var failures = 0;
    var inflight = false;     // one message at a time: its answer names its events
    var timer = null;
    var hidden = false;
    var wsUrl = env.endpoint.replace(/^http/, 'ws').replace(/\/$/, '') + '/capig/ws';
    var postUrl = env.endpoint.replace(/\/$/, '') + '/capig/events';

    function log() {
      if (env.debug && w.console) w.console.log.apply(w.console, ['[capig]'].concat([].slice.call(arguments)));
    }

    function newId() {
      var c = env.crypto;
      if (c && c.randomUUID) return c.randomUUID();
      var b = new Uint8Array(16);
      if (c && c.getRandomValues) c.getRandomValues(b);
      else for (var i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
      var s = '';
      for (var j = 0; j < 16; j++) s += (b[j] + 256).toString(16).slice(1);
      return s;
    }

    function cookie(name) {
      var m = ('; ' + (env.document.cookie || '')).split('; ' + name + '=');
      return m.length > 1 ? decodeURIComponent(m.pop().split(';')[0]) : undefined;
    }

    function copy(o) {
      var r = {};
      if (o && typeof o === 'object') for (var k in o) if (Object.prototype.hasOwnProperty.call(o, k)) r[k] = o[k];
      return r;
    }

    // One browser event object (docs/DESIGN.md, "Browser event object") for one pixel.
    function event(pixel, name, params, id) {
      var ud = copy(userData[pixel]);
      var fbp = cookie('_fbp'), fbc = cookie('_fbc');
      if (fbp) ud.fbp = fbp;
      if (fbc) ud.fbc = fbc;
      var e = {
        pixel_id: String(pixel),
        event_name: name,
        event_id: id,
        event_time: Math.floor(env.now() / 1000),
        event_source_url: String(w.location && w.location.href || ''),
        action_source: 'website',
        custom_data: copy(params),
        user_data: ud
      };
      if (env.document.referrer) e.referrer_url = env.document.referrer;
      if (dpo) {
        e.data_processing_options = dpo[0];
        if (dpo[1] !== undefined) e.data_processing_options_country = dpo[1];
        if (dpo[2] !== undefined) e.data_processing_options_state = dpo[2];
      }
      return e;
    }

    // Looks at one fbq call; returns the arguments to hand to the real fbq (with an
    // eventID added where the page gave none).
    function capture(args) {
      var cmd = args[0];
      if (cmd === 'init') {
        var id = String(args[1]);
        if (pixels.indexOf(id) < 0) pixels.push(id);
        if (args[2] && typeof args[2] === 'object') userData[id] = copy(args[2]);
        return args;
      }
      if (cmd === 'consent') {
        revoked = args[1] === 'revoke';
        if (!revoked) flushSoon(0);
        return args;
      }
      if (cmd === 'dataProcessingOptions') {
        dpo = [args[1], args[2], args[3]];
        return args;
      }
      var single = cmd === 'trackSingle' || cmd === 'trackSingleCustom';
      if (cmd !== 'track' && cmd !== 'trackCustom' && !single) return args;
      var at = single ? 2 : 1;
      args = args.slice();
      while (args.length < at + 3) args.push(undefined);
      if (args[at + 1] === undefined) args[at + 1] = {};
      var opts = copy(args[at + 2]);
      if (!opts.eventID) opts.eventID = newId();
      args[at + 2] = opts;
      if (revoked) return args;
      var targets = single ? [String(args[1])] : pixels;
      for (var i = 0; i < targets.length; i++) enqueue(event(targets[i], args[at], args[at + 1], opts.eventID));
      return args;
    }

    // Pixel ids from a loaded pixel's `getState()` ({pixels: [{id}…]}).
    function adoptPixels(fb) {
      try {
        var list = (fb.getState && fb.getState().pixels) || [];
        for (var i = 0; i < list.length; i++) {
          var id = String(list[i] && list[i].id !== undefined ? list[i].id : list[i]);
          if (pixels.indexOf(id) < 0) pixels.push(id);
        }
      } catch (err) {}
    }

    function enqueue(e) {
      pending.push({ e: e, sent: false });
      if (pending.length > MAX_PENDING) pending.splice(0, pending.length - MAX_PENDING);
      flushSoon(0);
    }

    function flushSoon(ms) {
      if (timer !== null) return;
      timer = env.setTimeout(function () { timer = null; flush(); }, ms);
    }

    function unsent() {
      var out = [];
      for (var i = 0; i < pending.length && out.length < MAX_BATCH; i++) if (!pending[i].sent && !pending[i].post) out.push(pending[i]);
      return out;
    }

    function flush() {
      if (revoked || !pending.length) return;
      if (hidden || !env.WebSocket || failures >= 3) return beacon(false);
      if (!ws) return connect();
      if (!wsOpen || inflight) return;
      var batch = unsent();
      if (!batch.length) return;
      var events = [];
      for (var i = 0; i < batch.length; i++) { batch[i].sent = true; events.push(batch[i].e); }
      try {
        ws.send(JSON.stringify(events));
        inflight = true;
        log('sent', events.length);
      } catch (err) {
        for (var j = 0; j < batch.length; j++) batch[j].sent = false;
      }
    }

    function connect() {
      try {
        ws = new env.WebSocket(wsUrl);
      } catch (err) {
        failures++;
        ws = null;
        return flushSoon(backoff());
      }
      ws.onopen = function () { wsOpen = true; failures = 0; flush(); };
      ws.onmessage = function (m) { answer(m.data); };
      ws.onclose = function () {
        // What was sent and never acknowledged goes again (capig dedups by event_id).
        ws = null;
        wsOpen = false;
        inflight = false;
        failures++;
        for (var i = 0; i < pending.length; i++) pending[i].sent = false;
        if (pending.length) flushSoon(backoff());
      };
      ws.onerror = function () {};
    }

    function backoff() {
      return Math.min(30000, 250 * Math.pow(2, Math.min(failures, 7))) * (0.5 + Math.random() / 2);
    }

    // The gateway's answer to one message: {"stored":[ids],"rejected":[{event_id}…]}, or
    // {"refused":…} (spool full, rate limited: send again later).
    function answer(text) {
      var a;
      try { a = JSON.parse(text); } catch (err) { return; }
      inflight = false;
      if (a.refused) {
        for (var i = 0; i < pending.length; i++) pending[i].sent = false;
        return flushSoon(backoff());
      }
      if (a.error) {
        // The gateway could not read the message: sending it again would not help.
        log('refused message', a.error);
        pending = pending.filter(function (p) { return !p.sent; });
        return flushSoon(0);
      }
      var done = {};
      var k;
      for (k = 0; a.stored && k < a.stored.length; k++) done[a.stored[k]] = 1;
      for (k = 0; a.rejected && k < a.rejected.length; k++) {
        done[a.rejected[k].event_id] = 1;
        log('rejected', a.rejected[k].event_id, a.rejected[k].reason);
      }
      // An id names one event per pixel: drop the sent ones with it.
      pending = pending.filter(function (p) { return !(p.sent && done[p.e.event_id]); });
      for (var j = 0; j < pending.length; j++) pending[j].sent = false;
      if (pending.length) flushSoon(0);
    }

    // UTF-8 bytes of a string (what the browser counts against its keepalive quota).
    function bytes(s) {
      var n = s.length;
      for (var i = 0; i < s.length; i++) {
        var c = s.charCodeAt(i);
        if (c >= 0x800) n += (c & 0xfc00) === 0xd800 ? 1 : 2;
        else if (c >= 0x80) n += 1;
      }
      return n;
    }

    function drop(list) {
      pending = pending.filter(function (p) { return list.indexOf(p) < 0; });
    }

    // Hands events to the browser, which delivers them even after the page is gone:
    // without a WebSocket, the unsent ones; when the page goes away (`all`), every one
    // not acknowledged, those written to the socket too (the socket dies with the page
    // and may not have sent them; capig answers a copy it already has as a duplicate).
    // Bodies of at most MAX_BATCH events, BEACON_BYTES in all by sendBeacon; what
    // sendBeacon refuses goes by fetch with keepalive and stays pending until answered.
    function beacon(all) {
      var list = [];
      for (var i = 0; i < pending.length; i++) {
        if (!pending[i].post && (all || !pending[i].sent)) list.push(pending[i]);
      }
      var budget = BEACON_BYTES;
      var left = false;
      while (list.length) {
        // One body: up to MAX_BATCH events, within what is left of the budget (once that
        // is spent, within BEACON_BYTES: those go by fetch).
        var parts = [JSON.stringify(list[0].e)];
        var size = bytes(parts[0]) + 2;
        var cap = size <= budget ? budget : BEACON_BYTES;
        var chunk = [list.shift()];
        while (list.length && chunk.length < MAX_BATCH) {
          var s = JSON.stringify(list[0].e), b = bytes(s) + 1;
          if (size + b > cap) break;
          chunk.push(list.shift());
          parts.push(s);
          size += b;
        }
        var body = '[' + parts.join(',') + ']';
        var ok = false;
        try {
          var n = env.navigator;
          if (size <= budget && n && n.sendBeacon) ok = n.sendBeacon(postUrl, body);
        } catch (err) { ok = false; }
        if (ok) {
          budget -= size;
          drop(chunk);
          log('beacon', chunk.length);
        } else if (!post(chunk, body)) {
          left = true;
        }
      }
      if (left && !hidden) flushSoon(backoff());
    }

    // Sends one body by fetch with keepalive; its events stay pending, marked, until
    // the answer. False when there is no fetch.
    function post(chunk, body) {
      if (!env.fetch) return false;
      for (var i = 0; i < chunk.length; i++) chunk[i].post = true;
      function release() {
        for (var j = 0; j < chunk.length; j++) chunk[j].post = false;
        if (pending.length && !hidden) flushSoon(backoff());
      }
      try {
        env.fetch(postUrl, { method: 'POST', body: body, keepalive: true, credentials: 'include', headers: { 'Content-Type': 'text/plain' } })
          .then(function (r) {
            // Stored, or a message capig cannot read (sending it again would not help).
            if (r.ok || (r.status >= 400 && r.status < 500 && r.status !== 429)) drop(chunk);
            else release();
          }, release);
      } catch (err) { release(); }
      return true;
    }

    function onHide() {
      hidden = true;
      beacon(true);
      save();
    }

    // Same-tab navigation: what is still pending is resent once by the next page.
    function save() {
      try {
        if (env.sessionStorage) env.sessionStorage.setItem(STORE, JSON.stringify(pending.map(function (p) { return p.e; })));
      } catch (err) {}
    }

    function restore() {
      try {
        var s = env.sessionStorage && env.sessionStorage.getItem(STORE);
        if (!s) return;
        env.sessionStorage.removeItem(STORE);
        var list = JSON.parse(s);
        for (var i = 0; i < list.length; i++) pending.push({ e: list[i], sent: false });
        if (pending.length) flushSoon(0);
      } catch (err) {}
    }

    // Replaces window.fbq with a function that behaves like the pixel's own stub (queue
    // until fbevents.js sets callMethod, then call it) and captures every call first.
    function install() {
      var orig = w.fbq;
      var f = function () {
        var args = [].slice.call(arguments);
        try { args = capture(args); } catch (err) { log('capture failed', err); }
        if (f.callMethod) return f.callMethod.apply(f, args);
        if (orig && orig.callMethod) return orig.apply(orig, args);
        f.queue.push(args);
      };
      if (orig) {
        for (var k in orig) if (Object.prototype.hasOwnProperty.call(orig, k)) f[k] = orig[k];
        // The pixel's script may have run first and taken the queue, `init` with it:
        // its state names the pixels, so the events from now on are still mirrored.
        // (What it sent before this script ran had no shared eventID: nothing to do.)
        if (orig.callMethod) adoptPixels(orig);
        // Calls queued before capig.js loaded: captured now, with their eventID added in
        // place, so the pixel sends the same id when it processes the queue.
        var q = orig.queue || [];
        for (var i = 0; i < q.length; i++) {
          try { q[i] = capture([].slice.call(q[i])); } catch (err) {}
        }
        f.queue = q;
      } else {
        f.queue = [];
        f.loaded = true;
        f.version = '2.0';
        w._fbq = w._fbq || f;
      }
      f.push = f;
      f.capig = { pending: function () { return pending.length; } };
      w.fbq = f;
      restore();
      try {
        w.addEventListener('pagehide', onHide);
        env.document.addEventListener('visibilitychange', function () {
          if (env.document.visibilityState === 'hidden') onHide();
          else { hidden = false; flushSoon(0); }
        });
      } catch (err) {}
      return f;
    }

    return { install: install, capture: capture, answer: answer, flush: flush, pending: function () { return pending; }, onHide: onHide };
  }

  if (typeof module !== 'undefined' && module.exports) {
    module.exports = createClient;
    return;
  }
  try {
    var d = root.document;
    var tag = d.currentScript;
    var src = tag && tag.src ? new URL(tag.src, root.location.href) : root.location;
    createClient({
      window: root,
      document: d,
      WebSocket: root.WebSocket,
      navigator: root.navigator,
      fetch: root.fetch && root.fetch.bind(root),
      setTimeout: root.setTimeout.bind(root),
      sessionStorage: (function () { try { return root.sessionStorage; } catch (e) { return null; } })(),
      crypto: root.crypto,
      now: function () { return Date.now(); },
      endpoint: (tag && tag.getAttribute('data-endpoint')) || src.origin,
      debug: !!(tag && tag.hasAttribute('data-debug'))
    }).install();
  } catch (err) {}
})(typeof window !== 'undefined' ? window : this);

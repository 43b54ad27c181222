/* A STAND-IN for Meta's fbevents.js, for `capig demo` only. Meta's servers cannot be
 * reached from here, so this script does what the real pixel's browser side does that
 * the demo needs: it takes over the fbq queue, sets the _fbp cookie when the page has
 * none, and records every event it "sends" to www.facebook.com/tr at /demo/pixel, so the
 * status page can compare the browser channel with what capig delivered. */
(function (w, d) {
  'use strict';
  var f = w.fbq;
  if (!f || f.capigDemoPixel) return;
  var pixels = [];
  var revoked = false;
  if (!/(^|; )_fbp=/.test(d.cookie)) {
    var rand = Math.floor(1e9 + Math.random() * 9e9);
    d.cookie = '_fbp=fb.1.' + Date.now() + '.' + rand + '; path=/; max-age=7776000; SameSite=Lax';
  }
  function send(pixel, name, params, opts) {
    var body = JSON.stringify({
      pixel_id: pixel, event_name: name, event_id: (opts && opts.eventID) || null,
      custom_data: params || {}, url: w.location.href, time: Date.now()
    });
    try {
      if (navigator.sendBeacon) navigator.sendBeacon('/demo/pixel', body);
      else fetch('/demo/pixel', { method: 'POST', body: body, keepalive: true });
    } catch (e) {}
  }
  function call(cmd) {
    var a = [].slice.call(arguments, 1);
    if (cmd === 'init') { if (pixels.indexOf(String(a[0])) < 0) pixels.push(String(a[0])); return; }
    // Like the real pixel: nothing is sent while consent is revoked.
    if (cmd === 'consent') { revoked = a[0] === 'revoke'; return; }
    if (revoked) return;
    if (cmd === 'track' || cmd === 'trackCustom') {
      for (var i = 0; i < pixels.length; i++) send(pixels[i], a[0], a[1], a[2]);
    } else if (cmd === 'trackSingle' || cmd === 'trackSingleCustom') {
      send(String(a[0]), a[1], a[2], a[3]);
    }
  }
  f.callMethod = function () { call.apply(null, arguments); };
  // As fbevents.js: the pixels initialized so far.
  f.getState = function () { return { pixels: pixels.map(function (id) { return { id: id }; }) }; };
  f.capigDemoPixel = true;
  var q = f.queue || [];
  f.queue = [];
  for (var i = 0; i < q.length; i++) f.callMethod.apply(f, q[i]);
})(window, document);

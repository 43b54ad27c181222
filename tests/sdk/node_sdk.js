#!/usr/bin/env node
// Meta's Node business SDK (facebook-nodejs-business-sdk) against `capig sim`.
//
// Usage: node node_sdk.js SIM_URL [PIXEL_ID]
//
// The SDK builds every Graph URL from the static getter FacebookAdsApi.GRAPH (api.js),
// so the getter is redefined to return the simulator's URL. Sends one realistic event
// and checks it is accepted, then one event older than 7 days and checks the request is
// rejected with code 100. Exits non-zero on any mismatch.
'use strict';

const bizSdk = require('facebook-nodejs-business-sdk');

const { FacebookAdsApi, EventRequest, ServerEvent, UserData, CustomData } = bizSdk;

function purchase(eventTime) {
  // The SDK normalizes and hashes emails and phones itself; IP, UA, fbp and fbc go raw.
  const userData = new UserData()
    .setEmails(['Joe.Smith@Example.com'])
    .setPhones(['+1 (650) 555-1212'])
    .setClientIpAddress('203.0.113.7')
    .setClientUserAgent('Mozilla/5.0 (X11; Linux x86_64) capig-sdk-test')
    .setFbc('fb.1.1554763741205.IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgk')
    .setFbp('fb.1.1596403881668.1116446470');
  const customData = new CustomData().setCurrency('usd').setValue(142.52);
  return new ServerEvent()
    .setEventName('Purchase')
    .setEventTime(eventTime)
    .setEventId(`node-sdk-${eventTime}`)
    .setUserData(userData)
    .setCustomData(customData)
    .setEventSourceUrl('https://shop.example/checkout')
    .setActionSource('website');
}

async function main() {
  const url = process.argv[2];
  const pixelId = process.argv[3] || '1234567890';
  if (!url) {
    console.error('usage: node node_sdk.js SIM_URL [PIXEL_ID]');
    return 2;
  }
  Object.defineProperty(FacebookAdsApi, 'GRAPH', {
    get: () => url.replace(/\/+$/, ''),
    configurable: true,
  });
  const token = 'capig-sim-node-token';
  FacebookAdsApi.init(token);
  const now = Math.floor(Date.now() / 1000);

  const response = await new EventRequest(token, pixelId).setEvents([purchase(now)]).execute();
  console.log('node sdk response:', JSON.stringify({
    events_received: response.events_received,
    messages: response.messages,
    fbtrace_id: response.fbtrace_id,
  }));
  if (response.events_received !== 1) {
    console.error('expected events_received == 1');
    return 1;
  }

  try {
    await new EventRequest(token, pixelId).setEvents([purchase(now - 8 * 24 * 3600)]).execute();
  } catch (error) {
    // FacebookRequestError keeps Graph's `error` object as `response` (exceptions.js).
    const graphError = error.response || {};
    console.log('node sdk rejection:', error.status, JSON.stringify(graphError));
    if (graphError.code !== 100 || graphError.error_subcode !== 2804003) {
      console.error('expected code 100, subcode 2804003');
      return 1;
    }
    return 0;
  }
  console.error('an event 8 days old was accepted');
  return 1;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error('node sdk test failed:', error && (error.stack || error));
    process.exit(1);
  },
);

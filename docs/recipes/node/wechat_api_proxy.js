// wechat-api (callback style), proxy-first: every call goes through wxmp's proxy, which adds
// the access_token, refreshes it when WeChat calls it stale, and retries once.
//
// The placeholder token never expires, so wechat-api never fetches one with an AppSecret (it
// has none). The API key is added to each request in a fresh headers object: wechat-api copies
// one call's headers into its defaults (`api.setOpts({headers})` would leak a POST's
// Content-Type and Content-Length into every later call).
//
// Tested by crates/wxmp/tests/sdk_recipes.rs against wechat-api 1.35.1.
'use strict';
const API = require('wechat-api');

function makeClient(wxmpUrl, app, apiKey, appid) {
  // The recipe: four lines.
  const api = new API(appid, '', (cb) => cb(null, { accessToken: 'held-by-wxmp', expireTime: Infinity }), (token, cb) => cb(null));
  api.endpoint = `${wxmpUrl}/v1/apps/${app}/proxy`;
  const request = api.request;
  api.request = function (url, opts, cb) { return request.call(this, url, { ...opts, headers: { ...(opts && opts.headers), Authorization: `Bearer ${apiKey}` } }, cb); };
  return api;
}

module.exports = { makeClient };

// co-wechat-api (async), proxy-first: every call goes through wxmp's proxy, which adds the
// access_token, refreshes it when WeChat calls it stale, and retries once.
//
// `tokenFromCustom` (the fifth argument) switches off co-wechat-api's own refresh, which on
// 40001/42001 would fetch new tokens with the AppSecret up to three times in a row. The
// placeholder token never expires. The API key goes into a fresh headers object per request
// (co-wechat-api, like wechat-api, copies one call's headers into its defaults).
//
// Tested by crates/wxmp/tests/sdk_recipes.rs against co-wechat-api 3.11.0.
'use strict';
const API = require('co-wechat-api');

function makeClient(wxmpUrl, app, apiKey, appid) {
  // The recipe: four lines.
  const api = new API(appid, '', async () => ({ accessToken: 'held-by-wxmp', expireTime: Infinity }), async () => {}, true);
  api.prefix = `${wxmpUrl}/v1/apps/${app}/proxy/cgi-bin/`;
  const request = api.request;
  api.request = function (url, opts, retry) { return request.call(this, url, { ...opts, headers: { ...(opts && opts.headers), Authorization: `Bearer ${apiKey}` } }, retry); };
  return api;
}

module.exports = { makeClient };

// wechat-api (callback style), token-borrowing: the SDK calls WeChat itself with the token it
// borrows from wxmp. When WeChat calls that token stale (40001, 40014, 42001), the exact token
// in the failed request is reported to wxmp's conditional refresh and the call is made once
// more with the token wxmp answers.
//
// Why not wechat-api's own retry: it retries only on 40001 (a 42001 reaches the caller), and
// it retries with the token its getToken hook gives, which knows nothing of the failure; with
// its default store that is the same rejected token. The AppSecret stays in wxmp: getToken
// always answers a token or an error, so wechat-api never fetches one itself.
//
// Tested by crates/wxmp/tests/sdk_recipes.rs against wechat-api 1.35.1.
'use strict';
const API = require('wechat-api');
const urllib = require('urllib');

const STALE_TOKEN_CODES = [40001, 40014, 42001];

// `wechatUrl`: where the SDK calls WeChat itself (the emulator, offline).
function makeClient(wxmpUrl, app, apiKey, appid, wechatUrl = 'https://api.weixin.qq.com') {
  const base = `${wxmpUrl}/v1/apps/${app}/access_token`;
  const headers = () => ({ Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json' });
  const asToken = (body) => ({ accessToken: body.access_token, expireTime: Date.now() + (body.expires_in - 10) * 1000 });
  const borrow = (cb) => urllib.request(base, { headers: headers(), dataType: 'json', timeout: 10000 }, (err, body, res) =>
    err || res.statusCode !== 200 ? cb(err || new Error(`wxmp answered ${res.statusCode}: ${JSON.stringify(body)}`)) : cb(null, asToken(body)));
  const reportStale = (stale, cb) => urllib.request(`${base}/refresh`, { method: 'POST', headers: headers(), content: JSON.stringify({ stale }), dataType: 'json', timeout: 10000 }, (err, body, res) =>
    err || res.statusCode !== 200 ? cb(err || new Error(`wxmp answered ${res.statusCode}: ${JSON.stringify(body)}`)) : cb(null, asToken(body)));

  const api = new API(appid, '', borrow, (token, cb) => cb(null));
  api.endpoint = wechatUrl;
  const request = api.request;
  api.request = function (url, opts, cb) {
    if (typeof opts === 'function') { cb = opts; opts = {}; }
    request.call(this, url, opts, (err, data, res) => {
      const used = new URL(url).searchParams.get('access_token');
      if (!(data && STALE_TOKEN_CODES.includes(data.errcode)) || !used) return cb(err, data, res);
      reportStale(used, (e, fresh) => {
        if (e) return cb(err, data, res);
        const again = new URL(url);
        again.searchParams.set('access_token', fresh.accessToken);
        api.token = fresh;
        request.call(this, again.toString(), opts, cb); // once: a second rejection is the caller's
      });
    });
  };
  return api;
}

module.exports = { makeClient };

// co-wechat-api (async), token-borrowing: the SDK calls WeChat itself with the token it
// borrows from wxmp. When WeChat calls that token stale (40001, 40014, 42001), the exact token
// in the failed request is reported to wxmp's conditional refresh and the call is made once
// more with the token wxmp answers.
//
// Why not co-wechat-api's own retry: on 40001/42001 it drops its token and fetches a new one
// from /cgi-bin/token with the AppSecret, up to three times per call; every such fetch
// retires the token every other server is using. `tokenFromCustom` (the fifth argument)
// switches that off, and the AppSecret stays in wxmp.
//
// Tested by crates/wxmp/tests/sdk_recipes.rs against co-wechat-api 3.11.0.
'use strict';
const API = require('co-wechat-api');

const STALE_TOKEN_CODES = [40001, 40014, 42001];

class WxmpAPI extends API {
  constructor(wxmpUrl, app, apiKey, appid, wechatUrl = 'https://api.weixin.qq.com') {
    super(appid, '', null, null, true);
    this.prefix = `${wechatUrl}/cgi-bin/`;
    this.wxmp = `${wxmpUrl}/v1/apps/${app}/access_token`;
    this.wxmpKey = apiKey;
    this.getToken = () => this.borrow('GET');
    this.saveToken = async () => {};
  }

  async borrow(method, body) {
    const res = await fetch(this.wxmp + (body ? '/refresh' : ''), {
      method,
      headers: { Authorization: `Bearer ${this.wxmpKey}`, 'Content-Type': 'application/json' },
      body: body && JSON.stringify(body),
      signal: AbortSignal.timeout(10000),
    });
    const answer = await res.json();
    if (!res.ok) throw new Error(`wxmp answered ${res.status}: ${JSON.stringify(answer)}`);
    return { accessToken: answer.access_token, expireTime: Date.now() + (answer.expires_in - 10) * 1000 };
  }

  async request(url, opts) {
    try {
      return await super.request(url, opts, 0);
    } catch (err) {
      const used = new URL(url).searchParams.get('access_token');
      if (!STALE_TOKEN_CODES.includes(err.code) || !used) throw err;
      const fresh = await this.borrow('POST', { stale: used });
      const again = new URL(url);
      again.searchParams.set('access_token', fresh.accessToken);
      return super.request(again.toString(), opts, 0); // once: a second rejection is the caller's
    }
  }
}

// `wechatUrl`: where the SDK calls WeChat itself (the emulator, offline).
function makeClient(wxmpUrl, app, apiKey, appid, wechatUrl) {
  return new WxmpAPI(wxmpUrl, app, apiKey, appid, wechatUrl);
}

module.exports = { makeClient, WxmpAPI };

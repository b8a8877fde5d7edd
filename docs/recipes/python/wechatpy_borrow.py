"""wechatpy, token-borrowing: the SDK calls WeChat itself, with the access_token it borrows
from wxmp. When WeChat calls that token stale (40001, 40014, 42001), the client reports exactly
that token to wxmp's conditional refresh and retries once with the token wxmp answers.

Why not wechatpy's own retry: on those errcodes wechatpy fetches a new token from
api.weixin.qq.com with the AppSecret and retries by recursion, with no limit. Here the AppSecret
stays in wxmp, the retry happens once, and a crowd of clients reporting the same stale token
causes one refresh upstream.

Tested by crates/wxmp/tests/sdk_recipes.rs against wechatpy 1.8.18.
"""

import time

import requests
from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException

STALE_TOKEN_CODES = (40001, 40014, 42001)
# Where the SDK calls WeChat itself (the emulator, offline).
WECHAT = "https://api.weixin.qq.com"


class WxmpWeChatClient(WeChatClient):
    def __init__(self, wxmp_url, app, api_key, appid, wechat_url=WECHAT, timeout=10):
        # auto_retry=False: the bounded retry below replaces wechatpy's unbounded one.
        super().__init__(appid, secret=None, timeout=timeout, auto_retry=False)
        self.API_BASE_URL = f"{wechat_url}/cgi-bin/"
        self._wxmp = f"{wxmp_url}/v1/apps/{app}/access_token"
        self._wxmp_http = requests.Session()
        self._wxmp_http.headers["Authorization"] = f"Bearer {api_key}"

    def _keep(self, answer):
        answer.raise_for_status()
        body = answer.json()
        self.session.set(self.access_token_key, body["access_token"], body["expires_in"])
        self.expires_at = int(time.time()) + body["expires_in"]
        return body

    def fetch_access_token(self):
        # wechatpy calls this when it holds no token or its copy is about to expire.
        return self._keep(self._wxmp_http.get(self._wxmp, timeout=self.timeout))

    def report_stale(self, stale):
        # Refreshes only if `stale` is still wxmp's current token; either way, answers the
        # token to use now.
        return self._keep(
            self._wxmp_http.post(self._wxmp + "/refresh", json={"stale": stale}, timeout=self.timeout)
        )

    def _request(self, method, url_or_endpoint, **kwargs):
        first = dict(kwargs, params=dict(kwargs.get("params") or {}))
        try:
            return super()._request(method, url_or_endpoint, **first)
        except WeChatClientException as e:
            used = first["params"].get("access_token")
            if e.errcode not in STALE_TOKEN_CODES or not used:
                raise
            fresh = self.report_stale(used)["access_token"]
            again = dict(kwargs, params=dict(kwargs.get("params") or {}, access_token=fresh))
            return super()._request(method, url_or_endpoint, **again)


def make_client(wxmp_url, app, api_key, appid, wechat_url=WECHAT):
    return WxmpWeChatClient(wxmp_url, app, api_key, appid, wechat_url)

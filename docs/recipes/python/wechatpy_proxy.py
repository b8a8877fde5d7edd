"""wechatpy, proxy-first: every WeChat call goes through wxmp's proxy, which adds the
access_token, refreshes it when WeChat calls it stale, and retries once.

The SDK keeps no AppSecret and never refreshes: it is given a placeholder token that wxmp
replaces, and its own retry is off (wxmp's proxy already retried once; wechatpy's retry would
fetch a token from api.weixin.qq.com with the AppSecret, which this client does not have).

Tested by crates/wxmp/tests/sdk_recipes.rs against wechatpy 1.8.18.
"""

from wechatpy import WeChatClient


def make_client(wxmp_url, app, api_key, appid, wechat_url=None):
    # `wechat_url` is unused: with the proxy, only wxmp talks to WeChat.
    # The recipe: four lines.
    client = WeChatClient(appid, secret=None, access_token="held-by-wxmp", auto_retry=False)
    client.API_BASE_URL = f"{wxmp_url}/v1/apps/{app}/proxy/cgi-bin/"
    client._http.headers["Authorization"] = f"Bearer {api_key}"
    return client

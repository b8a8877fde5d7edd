"""Drives one wechatpy recipe (docs/recipes/python/<module>.py) the way a business server
would, with a foreign refresh (the emulator's revoke) between two calls; prints one JSON line
of what the SDK saw. Run by crates/wxmp/tests/sdk_recipes.rs."""

import importlib
import json
import os
import sys
import urllib.request

module = sys.argv[1]
recipe = importlib.import_module(module)
env = os.environ
client = recipe.make_client(
    env["WXMP_URL"], env["WXMP_APP"], env["WXMP_KEY"], env["WXMP_APPID"], env["EMULATOR_URL"]
)

out = {"ips": client.misc.get_wechat_ips(), "user": client.user.get("oUser1")}
out["token_before"] = client.session.get(client.access_token_key)
revoke = urllib.request.Request(
    f"{env['EMULATOR_URL']}/_emulator/revoke?appid={env['WXMP_APPID']}", method="POST"
)
urllib.request.urlopen(revoke, timeout=10).read()
out["after_revoke"] = client.user.get("oUser1")
out["token_after"] = client.session.get(client.access_token_key)
client.message.send_text("oUser1", f"hello from {module}")
print(json.dumps(out))

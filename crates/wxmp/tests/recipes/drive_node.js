// Drives one node recipe (docs/recipes/node/<file>.js) the way a business server would, with a
// foreign refresh (the emulator's revoke) between two calls; prints one JSON line of what the
// SDK saw. Run by crates/wxmp/tests/sdk_recipes.rs. Works with both the callback style
// (wechat-api) and the async style (co-wechat-api).
'use strict';
const path = require('path');

async function main() {
  const file = process.argv[2];
  const name = path.basename(file, '.js');
  const env = process.env;
  const api = require(file).makeClient(env.WXMP_URL, env.WXMP_APP, env.WXMP_KEY, env.WXMP_APPID, env.EMULATOR_URL);
  const callbackStyle = name.startsWith('wechat_api');
  const call = (method, ...args) => callbackStyle
    ? new Promise((resolve, reject) => api[method](...args, (err, data) => (err ? reject(err) : resolve(data))))
    : api[method](...args);
  const token = async () => {
    if (callbackStyle) return api.token && api.token.accessToken;
    const t = await api.getToken();
    return t && t.accessToken;
  };

  const out = { ips: (await call('getIp')).ip_list, user: await call('getUser', 'oUser1') };
  out.token_before = await token();
  const revoked = await fetch(`${env.EMULATOR_URL}/_emulator/revoke?appid=${env.WXMP_APPID}`, { method: 'POST' });
  if (!revoked.ok) throw new Error(`revoke failed: ${revoked.status}`);
  out.after_revoke = await call('getUser', 'oUser1');
  out.token_after = await token();
  await call('sendText', 'oUser1', `hello from ${name}`);
  console.log(JSON.stringify(out));
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : err);
  process.exit(1);
});

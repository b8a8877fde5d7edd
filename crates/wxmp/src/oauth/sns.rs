//! The `/sns/` calls of OAuth 网页授权, and WeChat's errors in plain words.
//!
//! `sns/oauth2/access_token` takes the AppSecret in its query string, which is why business
//! pages cannot do it without holding the secret, and why wxmp never lets a transport error
//! print its URL (see `crate::outbound::describe`). The user's OAuth access_token and
//! refresh_token are used here and dropped: they never leave this module, are never stored and
//! never logged. What comes out is an [`Identity`]: the OpenID, the granted scope, the UnionID
//! when WeChat gives one, and for `snsapi_userinfo` the profile.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

use super::OAuthError;
use crate::config::AppConfig;
use crate::token::upstream::REQUEST_TIMEOUT;
use crate::token::Upstream;

/// Who signed in: what a business server gets for a ticket or a code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The user's OpenID under this app.
    pub openid: String,
    /// The scope the user granted (`snsapi_base` or `snsapi_userinfo`).
    pub scope: String,
    /// The UnionID, when the account is bound to an open platform account.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub unionid: Option<String>,
    /// For `snsapi_userinfo`: the profile as WeChat returned it (nickname, headimgurl …).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub userinfo: Option<Value>,
}

#[derive(Deserialize)]
struct SnsAnswer {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
    access_token: Option<String>,
    openid: Option<String>,
    scope: Option<String>,
    unionid: Option<String>,
}

/// GETs `{upstream}/{path}` with `query` and reads WeChat's JSON.
async fn call(
    upstream: &Upstream,
    path: &str,
    query: &[(&str, &str)],
) -> Result<(SnsAnswer, Value), OAuthError> {
    let response = upstream
        .http()
        .get(upstream.url(path))
        .query(query)
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(|e| OAuthError::Unreachable(crate::outbound::describe(&e)))?;
    let status = response.status();
    if status.is_redirection() {
        return Err(OAuthError::Garbage(crate::outbound::redirect_refused(
            "WeChat",
            status.as_u16(),
        )));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| OAuthError::Unreachable(crate::outbound::describe(&e)))?;
    if !status.is_success() {
        return Err(OAuthError::Garbage(format!(
            "WeChat answered HTTP {status} ({} bytes) instead of JSON",
            body.len()
        )));
    }
    let value: Value = serde_json::from_slice(&body).map_err(|_| {
        OAuthError::Garbage(format!(
            "WeChat answered {} bytes that are not JSON",
            body.len()
        ))
    })?;
    let answer: SnsAnswer = serde_json::from_value(value.clone()).map_err(|_| {
        OAuthError::Garbage("WeChat answered JSON of an unexpected shape".to_owned())
    })?;
    if answer.errcode != 0 {
        return Err(OAuthError::from_errcode(answer.errcode, &answer.errmsg));
    }
    Ok((answer, value))
}

/// Exchanges `code` for the user's identity; for `snsapi_userinfo` also fetches the profile.
pub async fn identify(
    upstream: &Upstream,
    app: &AppConfig,
    code: &str,
) -> Result<Identity, OAuthError> {
    let secret = app
        .secret
        .as_ref()
        .ok_or_else(|| OAuthError::NoSecret(app.name.clone()))?;
    let (answer, _) = call(
        upstream,
        "sns/oauth2/access_token",
        &[
            ("appid", app.appid.as_str()),
            ("secret", secret.expose()),
            ("code", code),
            ("grant_type", "authorization_code"),
        ],
    )
    .await?;
    let (Some(access_token), Some(openid)) = (answer.access_token, answer.openid) else {
        return Err(OAuthError::Garbage(
            "WeChat's code exchange answered no access_token or openid".to_owned(),
        ));
    };
    // The user's token is wiped when this function returns; it goes nowhere else.
    let access_token = Zeroizing::new(access_token);
    let scope = answer.scope.unwrap_or_default();
    let mut identity = Identity {
        openid,
        unionid: answer.unionid.filter(|u| !u.is_empty()),
        userinfo: None,
        scope,
    };
    if identity.scope.split(',').any(|s| s == "snsapi_userinfo") {
        let (info, mut profile) = call(
            upstream,
            "sns/userinfo",
            &[
                ("access_token", access_token.as_str()),
                ("openid", identity.openid.as_str()),
                ("lang", "zh_CN"),
            ],
        )
        .await?;
        if info.openid.as_deref() != Some(identity.openid.as_str()) {
            return Err(OAuthError::Garbage(
                "WeChat's userinfo answered another OpenID".to_owned(),
            ));
        }
        if identity.unionid.is_none() {
            identity.unionid = info.unionid.filter(|u| !u.is_empty());
        }
        if let Some(map) = profile.as_object_mut() {
            map.remove("errcode");
            map.remove("errmsg");
        }
        identity.userinfo = Some(profile);
    }
    Ok(identity)
}

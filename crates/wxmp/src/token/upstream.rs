//! The WeChat endpoints the 中控 calls: `/cgi-bin/token`, `/cgi-bin/stable_token` and
//! `/cgi-bin/ticket/getticket`, with their answers classified.
//!
//! Every failure becomes an [`UpstreamError`] that says whether a retry can help
//! ([`UpstreamError::is_transient`]) and, for the ones that need a human, what to do
//! ([`UpstreamError::explain`]). The classic token call carries the AppSecret in its query
//! string, and reqwest's errors print the URL, so transport errors are always put in words by
//! [`outbound::describe`], which names the host and the cause but never the URL. A redirect is
//! an error (the client follows none): obeying it would send the AppSecret elsewhere.

use std::time::Duration;

use serde::Deserialize;
use url::Url;
use wxmp_proto::ApiErrcode;

use crate::config::{AppConfig, TokenApi};
use crate::outbound;

/// How long one upstream request may take. WeChat's token endpoints sometimes take several
/// seconds; an answer within 8 s must still count. The refresh lock's holder renews its lease
/// meanwhile, so this may exceed the lease.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A token or ticket as WeChat returned it.
#[derive(Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The access_token or ticket.
    pub value: String,
    /// Seconds of validity WeChat announced.
    pub expires_in: u64,
}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fetched(***, expires_in={})", self.expires_in)
    }
}

/// Why an upstream call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// WeChat answered with a non-zero `errcode`.
    #[error("WeChat answered errcode {errcode}: {errmsg}")]
    Api {
        /// The `errcode`.
        errcode: i64,
        /// The `errmsg`, as WeChat wrote it (it never contains secrets).
        errmsg: String,
    },
    /// The request did not complete (connect error, timeout).
    #[error("cannot reach WeChat: {0}")]
    Transport(String),
    /// WeChat answered something that is not the expected JSON.
    #[error("unexpected answer from WeChat: {0}")]
    BadResponse(String),
}

impl UpstreamError {
    /// True when the same call may succeed if simply retried later: `-1`, transport errors,
    /// garbage or 5xx answers, and the per-minute quota.
    pub fn is_transient(&self) -> bool {
        match self {
            UpstreamError::Api { errcode, .. } => matches!(
                ApiErrcode::from_code(*errcode),
                Some(ApiErrcode::SystemBusy | ApiErrcode::MinuteQuotaExceeded)
            ),
            UpstreamError::Transport(_) | UpstreamError::BadResponse(_) => true,
        }
    }

    /// The `errcode`, when WeChat gave one.
    pub fn errcode(&self) -> Option<i64> {
        match self {
            UpstreamError::Api { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }

    /// A plain-words explanation of what went wrong on a token call and what to do about it.
    pub fn explain(&self) -> String {
        let UpstreamError::Api { errcode, errmsg } = self else {
            return format!("{self}; wxmp retries with backoff");
        };
        let advice = match ApiErrcode::from_code(*errcode) {
            Some(ApiErrcode::IpNotWhitelisted) => match whitelist_ip(errmsg) {
                Some(ip) => format!(
                    "WeChat saw this server's IP as {ip}, which is not in the account's IP whitelist \
                     (公众平台 → 设置与开发 → 基本配置 → IP白名单): add {ip} there"
                ),
                None => "this server's IP is not in the account's IP whitelist \
                         (基本配置 → IP白名单): add it there"
                    .to_owned(),
            },
            Some(ApiErrcode::InvalidAppid) => {
                "WeChat does not know this AppID: check `appid` against 基本配置 → 开发者ID".to_owned()
            }
            Some(ApiErrcode::InvalidCredential | ApiErrcode::InvalidAppsecret) => {
                "WeChat refused the AppSecret: check `secret` (基本配置 → 开发者密码; a reset \
                 invalidates the old one)"
                    .to_owned()
            }
            Some(ApiErrcode::AppsecretFrozen) => "the AppSecret is frozen: unfreeze it in the console".to_owned(),
            Some(ApiErrcode::DailyQuotaExceeded) => {
                "the daily quota for this call is used up: it resets at midnight (Beijing time), \
                 or use clear_quota (10 times a month)"
                    .to_owned()
            }
            Some(ApiErrcode::AwaitingAdminConfirmation) => {
                "the account administrator must confirm this server's call in WeChat; wxmp retries later"
                    .to_owned()
            }
            Some(ApiErrcode::AdminRefused) => {
                "the administrator refused this server's call; WeChat blocks it for 1 to 24 hours".to_owned()
            }
            Some(ApiErrcode::ApiForbidden) => {
                "the token API is forbidden or the account is frozen: see the console".to_owned()
            }
            Some(ApiErrcode::AppidMissing | ApiErrcode::SecretMissing | ApiErrcode::InvalidGrantType) => {
                "the request was incomplete (a wxmp bug or a misconfigured upstream)".to_owned()
            }
            _ => "see WeChat's global return codes".to_owned(),
        };
        format!("errcode {errcode} ({errmsg}): {advice}")
    }
}

/// The IP in a 40164 message: `invalid ip 1.2.3.4 ipv6 ::ffff:1.2.3.4, not in whitelist …`.
pub fn whitelist_ip(errmsg: &str) -> Option<&str> {
    let rest = errmsg.split("invalid ip ").nth(1)?;
    let ip = rest.split([' ', ',']).next()?;
    (!ip.is_empty()).then_some(ip)
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
    access_token: Option<String>,
    ticket: Option<String>,
    expires_in: Option<u64>,
}

/// Which ticket `ticket/getticket` should issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TicketType {
    /// The JS-SDK `jsapi_ticket`.
    Jsapi,
    /// The 卡券 `api_ticket`.
    WxCard,
}

impl TicketType {
    /// The `type=` value.
    pub fn as_str(self) -> &'static str {
        match self {
            TicketType::Jsapi => "jsapi",
            TicketType::WxCard => "wx_card",
        }
    }
}

/// A client of the WeChat API at a configurable base URL.
#[derive(Clone, Debug)]
pub struct Upstream {
    http: reqwest::Client,
    base: Url,
}

impl Upstream {
    /// A client for `base` (e.g. `https://api.weixin.qq.com`, or an emulator).
    pub fn new(http: reqwest::Client, base: Url) -> Self {
        Upstream { http, base }
    }

    /// The HTTP client, shared with the proxy and the 客服消息 sender.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `{base}/{path}` (path without a leading slash).
    pub fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        let joined = format!(
            "{}/{}",
            url.path().trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        url.set_path(&joined);
        url
    }

    /// Fetches an access_token for `app`. `force_refresh` only matters for the stable API.
    pub async fn access_token(
        &self,
        app: &AppConfig,
        force_refresh: bool,
    ) -> Result<Fetched, UpstreamError> {
        let secret = app
            .secret
            .as_ref()
            .ok_or_else(|| UpstreamError::BadResponse("the app has no secret".to_owned()))?;
        let request = match app.token_api {
            TokenApi::Classic => self.http.get(self.url("cgi-bin/token")).query(&[
                ("grant_type", "client_credential"),
                ("appid", app.appid.as_str()),
                ("secret", secret.expose()),
            ]),
            TokenApi::Stable => {
                self.http
                    .post(self.url("cgi-bin/stable_token"))
                    .json(&serde_json::json!({
                        "grant_type": "client_credential",
                        "appid": app.appid.as_str(),
                        "secret": secret.expose(),
                        "force_refresh": force_refresh,
                    }))
            }
        };
        let answer = send(request).await?;
        match (answer.access_token, answer.expires_in) {
            (Some(value), Some(expires_in)) if !value.is_empty() => {
                Ok(Fetched { value, expires_in })
            }
            _ => Err(UpstreamError::BadResponse(
                "no access_token in the answer".to_owned(),
            )),
        }
    }

    /// Fetches a ticket with `access_token`.
    pub async fn ticket(
        &self,
        access_token: &str,
        ticket: TicketType,
    ) -> Result<Fetched, UpstreamError> {
        let request = self
            .http
            .get(self.url("cgi-bin/ticket/getticket"))
            .query(&[("access_token", access_token), ("type", ticket.as_str())]);
        let answer = send(request).await?;
        match (answer.ticket, answer.expires_in) {
            (Some(value), Some(expires_in)) if !value.is_empty() => {
                Ok(Fetched { value, expires_in })
            }
            _ => Err(UpstreamError::BadResponse(
                "no ticket in the answer".to_owned(),
            )),
        }
    }
}

async fn send(request: reqwest::RequestBuilder) -> Result<TokenAnswer, UpstreamError> {
    let response = request
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(|e| UpstreamError::Transport(outbound::describe(&e)))?;
    let status = response.status();
    if status.is_redirection() {
        // Following it would post the AppSecret to whatever host the Location names.
        return Err(UpstreamError::BadResponse(outbound::redirect_refused(
            "WeChat",
            status.as_u16(),
        )));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| UpstreamError::Transport(outbound::describe(&e)))?;
    if !status.is_success() {
        return Err(UpstreamError::BadResponse(format!("HTTP status {status}")));
    }
    let answer: TokenAnswer = serde_json::from_slice(&body)
        .map_err(|_| UpstreamError::BadResponse(format!("not JSON ({} bytes)", body.len())))?;
    if answer.errcode != 0 {
        return Err(UpstreamError::Api {
            errcode: answer.errcode,
            errmsg: answer.errmsg,
        });
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_the_ip_wechat_saw() {
        let msg = "invalid ip 47.100.1.2 ipv6 ::ffff:47.100.1.2, not in whitelist rid: 1-2-3";
        assert_eq!(whitelist_ip(msg), Some("47.100.1.2"));
        assert_eq!(whitelist_ip("something else"), None);
        let err = UpstreamError::Api {
            errcode: 40164,
            errmsg: msg.to_owned(),
        };
        assert!(err.explain().contains("47.100.1.2"));
        assert!(!err.is_transient());
    }

    #[test]
    fn classifies_transient_errors() {
        let busy = UpstreamError::Api {
            errcode: -1,
            errmsg: "system error".into(),
        };
        assert!(busy.is_transient());
        assert!(UpstreamError::Transport("x".into()).is_transient());
        for code in [40001, 40013, 40125, 45009, 89503] {
            let e = UpstreamError::Api {
                errcode: code,
                errmsg: String::new(),
            };
            assert!(!e.is_transient(), "{code}");
        }
    }

    #[test]
    fn joins_paths_under_the_base() {
        let http = reqwest::Client::new();
        let up = Upstream::new(http.clone(), Url::parse("http://127.0.0.1:9/").unwrap());
        assert_eq!(
            up.url("cgi-bin/token").as_str(),
            "http://127.0.0.1:9/cgi-bin/token"
        );
        let up = Upstream::new(http, Url::parse("http://h/prefix").unwrap());
        assert_eq!(
            up.url("/cgi-bin/token").as_str(),
            "http://h/prefix/cgi-bin/token"
        );
    }
}

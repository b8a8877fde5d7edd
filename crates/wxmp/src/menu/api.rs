//! The `/cgi-bin/menu/*` calls, with the access_token of the 中控.
//!
//! The token comes from a [`TokenCore`] over the configured store, as the running server's
//! does, so `wxmp menu push` on a machine next to `wxmp serve` reuses the stored token instead
//! of fetching (and, with the classic token API, retiring) one. A token WeChat calls stale gets
//! the 中控's one conditional refresh and one retry.

use serde_json::Value;
use wxmp_proto::ApiErrcode;

use super::{addconditional_body, create_body, errcode, AppMenu, Button, ConditionalMenu};
use crate::outbound;
use crate::token::upstream::REQUEST_TIMEOUT;
use crate::token::{TokenCore, TokenError};

/// Why a menu call failed. Never contains the access_token.
#[derive(Debug, thiserror::Error)]
pub enum MenuError {
    /// No access_token.
    #[error("no access_token: {0}")]
    Token(#[from] TokenError),
    /// The request did not complete.
    #[error("cannot reach WeChat: {0}")]
    Transport(String),
    /// An answer that is not WeChat's JSON.
    #[error("unexpected answer from WeChat: {0}")]
    BadResponse(String),
    /// WeChat refused.
    #[error("{}", errcode::explain(*.errcode, .errmsg))]
    Api {
        /// `errcode`.
        errcode: i64,
        /// `errmsg`.
        errmsg: String,
    },
}

/// The live menu, with the `menuid`s of its 个性化菜单 in publication order (for deleting them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    /// The menu, as the config would write it.
    pub menu: AppMenu,
    /// `menuid`s of the 个性化菜单, oldest first.
    pub conditional_ids: Vec<String>,
}

/// The menu interfaces of one app.
pub struct MenuApi {
    tokens: TokenCore,
    app: String,
}

impl MenuApi {
    /// The interfaces of `app`, with tokens from `tokens`.
    pub fn new(tokens: TokenCore, app: impl Into<String>) -> MenuApi {
        MenuApi {
            tokens,
            app: app.into(),
        }
    }

    /// `GET menu/get`: the live menu; no menu (46003) is an empty one.
    pub async fn live(&self) -> Result<Live, MenuError> {
        let answer = match self.call("cgi-bin/menu/get", None).await {
            Err(MenuError::Api { errcode: 46003, .. }) => {
                return Ok(Live {
                    menu: AppMenu::default(),
                    conditional_ids: Vec::new(),
                })
            }
            other => other?,
        };
        let conditional_ids = answer
            .get("conditionalmenu")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|c| match c.get("menuid") {
                        Some(Value::String(s)) => Some(s.clone()),
                        Some(Value::Number(n)) => Some(n.to_string()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let menu = AppMenu::from_get(&answer)
            .map_err(|e| MenuError::BadResponse(format!("menu/get: {e}")))?;
        Ok(Live {
            menu,
            conditional_ids,
        })
    }

    /// `POST menu/create`: replaces the default menu.
    pub async fn create(&self, button: &[Button]) -> Result<(), MenuError> {
        self.call("cgi-bin/menu/create", Some(&create_body(button)))
            .await
            .map(drop)
    }

    /// `GET menu/delete`: removes the default menu and every 个性化菜单.
    pub async fn delete(&self) -> Result<(), MenuError> {
        self.call("cgi-bin/menu/delete", None).await.map(drop)
    }

    /// `POST menu/addconditional`: publishes a 个性化菜单; returns its `menuid`.
    pub async fn add_conditional(&self, menu: &ConditionalMenu) -> Result<String, MenuError> {
        let answer = self
            .call(
                "cgi-bin/menu/addconditional",
                Some(&addconditional_body(menu)),
            )
            .await?;
        match answer.get("menuid") {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            _ => Err(MenuError::BadResponse(
                "menu/addconditional answered without a menuid".to_owned(),
            )),
        }
    }

    /// `POST menu/delconditional`.
    pub async fn del_conditional(&self, menuid: &str) -> Result<(), MenuError> {
        let body = serde_json::json!({ "menuid": menuid });
        self.call("cgi-bin/menu/delconditional", Some(&body))
            .await
            .map(drop)
    }

    /// One call: `POST` with `body`, else `GET`; a non-zero `errcode` is an error.
    async fn call(&self, path: &str, body: Option<&Value>) -> Result<Value, MenuError> {
        let called = self
            .tokens
            .with_access_token(
                &self.app,
                |token| async move { self.once(path, body, &token).await },
                |result| {
                    matches!(result, Err(MenuError::Api { errcode, .. })
                        if ApiErrcode::is_stale_token_code(*errcode))
                },
            )
            .await?;
        called
    }

    async fn once(
        &self,
        path: &str,
        body: Option<&Value>,
        token: &str,
    ) -> Result<Value, MenuError> {
        let upstream = self.tokens.upstream();
        let mut url = upstream.url(path);
        url.query_pairs_mut().append_pair("access_token", token);
        let request = match body {
            // Serialised by serde_json, which writes non-ASCII as UTF-8 (WeChat refuses
            // `\uXXXX` escapes with 40033).
            Some(body) => upstream.http().post(url).json(body),
            None => upstream.http().get(url),
        };
        let transport = |e: reqwest::Error| MenuError::Transport(outbound::describe(&e));
        let response = request
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if status.is_redirection() {
            return Err(MenuError::Transport(outbound::redirect_refused(
                "WeChat",
                status.as_u16(),
            )));
        }
        let text = response.text().await.map_err(transport)?;
        let answer: Value = serde_json::from_str(&text).map_err(|_| {
            MenuError::BadResponse(format!("HTTP {status} with a body that is not JSON"))
        })?;
        match answer.get("errcode").and_then(Value::as_i64) {
            None | Some(0) => Ok(answer),
            Some(errcode) => Err(MenuError::Api {
                errcode,
                errmsg: answer
                    .get("errmsg")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            }),
        }
    }
}

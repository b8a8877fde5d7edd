//! `[store]`: which backend keeps tokens, locks and the callback dedup records.

use std::path::PathBuf;

use serde::Deserialize;

use super::Checker;

/// The store backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// A SQLite file (the default).
    Sqlite {
        /// The database file; its folder is created when missing.
        path: PathBuf,
    },
    /// A shared Redis.
    Redis {
        /// `redis://…` URL.
        url: String,
        /// Key prefix, so several deployments can share one Redis.
        prefix: String,
    },
    /// In-process only; nothing survives a restart.
    Memory,
}

/// The default SQLite file.
pub const DEFAULT_SQLITE_PATH: &str = "wxmp-data/wxmp.db";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    backend: Option<String>,
    path: Option<String>,
    url: Option<String>,
    prefix: Option<String>,
}

pub(super) fn store_config(c: &mut Checker<'_>, raw: RawStore) -> Option<StoreConfig> {
    let backend = raw.backend.as_deref().unwrap_or("sqlite");
    match backend {
        "sqlite" => {
            let path = c.resolve(
                "store.path",
                raw.path.as_deref().unwrap_or(DEFAULT_SQLITE_PATH),
            )?;
            Some(StoreConfig::Sqlite { path: path.into() })
        }
        "redis" => {
            let url = c.resolve(
                "store.url",
                raw.url.as_deref().unwrap_or("redis://127.0.0.1:6379/0"),
            )?;
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                c.problem("store.url must start with redis:// or rediss://".to_owned());
                return None;
            }
            let prefix = c.resolve("store.prefix", raw.prefix.as_deref().unwrap_or("wxmp:"))?;
            Some(StoreConfig::Redis { url, prefix })
        }
        "memory" => Some(StoreConfig::Memory),
        other => {
            c.problem(format!(
                "store.backend = {other:?} is not one of \"sqlite\", \"redis\", \"memory\""
            ));
            None
        }
    }
}

//! One app's callback settings, for tools that play WeChat's side of the callback (`wxmp send`).
//!
//! Such a tool needs an app's AppID, Token, EncodingAESKey and mode, nothing else. Loading the
//! whole config would demand every `"$NAME"` in the file (the API keys, every AppSecret), which
//! a developer sending a test message from a laptop does not have. So the whole file is still
//! checked for its shape (syntax, unknown keys, with their lines), but only the chosen app's
//! callback keys are resolved and validated.

use std::path::Path;

use super::{AppConfig, Config, ConfigError, Environment, RawConfig};

/// The keys of an app that the callback's sender side needs.
const CALLBACK_KEYS: [&str; 4] = ["appid", "token", "encoding_aes_key", "mode"];

impl Config {
    /// The app names in the file at `path`, after checking the file's shape (no `"$NAME"` is
    /// resolved).
    pub fn app_names(path: &Path) -> Result<Vec<String>, ConfigError> {
        let table = read_checked(path)?;
        Ok(apps_table(&table)
            .map(|apps| apps.keys().cloned().collect())
            .unwrap_or_default())
    }

    /// App `name`'s callback settings (AppID, Token, EncodingAESKey, mode), resolving only
    /// those keys from `env`; every other field is left at its default. `Ok(None)` when the
    /// file has no such app.
    pub fn load_callback_app(
        path: &Path,
        env: &dyn Environment,
        name: &str,
    ) -> Result<Option<AppConfig>, ConfigError> {
        let table = read_checked(path)?;
        let Some(app) = apps_table(&table)
            .and_then(|apps| apps.get(name))
            .and_then(toml::Value::as_table)
        else {
            return Ok(None);
        };
        let kept: toml::Table = CALLBACK_KEYS
            .iter()
            .filter_map(|k| app.get(*k).map(|v| ((*k).to_owned(), v.clone())))
            .collect();
        let mut apps = toml::Table::new();
        apps.insert(name.to_owned(), toml::Value::Table(kept));
        let mut subset = toml::Table::new();
        subset.insert("apps".to_owned(), toml::Value::Table(apps));
        let raw: RawConfig = toml::Value::Table(subset)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::one(e.to_string()))?;
        // No spans to turn into lines: the subset holds no menu or auto-reply tables.
        let mut config = Config::from_raw(raw, env, "").map_err(|e| prefixed(path, e))?;
        Ok(config
            .apps
            .remove(name)
            .map(std::sync::Arc::unwrap_or_clone))
    }
}

/// Reads `path`, checks it against the full schema, and returns it as a table.
fn read_checked(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::one(format!("cannot read config file {}: {e}", path.display()))
    })?;
    let shape = |e: toml::de::Error| {
        prefixed(
            path,
            ConfigError::one(e.to_string().trim_end().replace('\n', "\n    ")),
        )
    };
    toml::from_str::<RawConfig>(&text).map_err(shape)?;
    text.parse::<toml::Table>().map_err(shape)
}

fn apps_table(table: &toml::Table) -> Option<&toml::Table> {
    table.get("apps").and_then(toml::Value::as_table)
}

fn prefixed(path: &Path, mut e: ConfigError) -> ConfigError {
    for p in &mut e.problems {
        *p = format!("{}: {p}", path.display());
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const TEXT: &str = r#"
[api]
keys = ["$UNSET_API_KEY"]
[apps.a]
appid = "wx0123456789abcdef"
secret = "$UNSET_SECRET"
token = "$A_TOKEN"
encoding_aes_key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
forward = "$UNSET_FORWARD"
[apps.b]
appid = "$UNSET_B_APPID"
token = "$UNSET_B_TOKEN"
"#;

    #[test]
    fn only_the_chosen_apps_callback_keys_are_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wxmp.toml");
        std::fs::write(&path, TEXT).unwrap();
        let env: HashMap<String, String> = [("A_TOKEN".to_owned(), "pamtest".to_owned())].into();
        assert_eq!(Config::app_names(&path).unwrap(), ["a", "b"]);
        let a = Config::load_callback_app(&path, &env, "a")
            .unwrap()
            .unwrap();
        assert_eq!(a.token.expose(), "pamtest");
        assert!(a.crypt.is_some() && a.secret.is_none());
        assert!(Config::load_callback_app(&path, &env, "c")
            .unwrap()
            .is_none());
        // The chosen app's own callback keys are still required.
        let err = Config::load_callback_app(&path, &env, "b").unwrap_err();
        assert!(err.to_string().contains("UNSET_B_TOKEN"), "{err}");
        // The file's shape is still checked in full, with the line.
        std::fs::write(&path, format!("{TEXT}typo = 1\n")).unwrap();
        let err = Config::app_names(&path).unwrap_err().to_string();
        assert!(err.contains("typo") && err.contains("line 13"), "{err}");
    }
}

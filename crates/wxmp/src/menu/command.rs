//! `wxmp menu diff|push|pull [--config FILE] --app NAME`.
//!
//! - `diff` compares the configured menu with the live one and prints the difference as a
//!   line diff of their TOML: exit 0 when equal, 1 when different, 2 when the comparison could
//!   not be made (the `diff(1)` convention, so scripts can tell "different" from "broken").
//! - `push` publishes the configured menu: nothing when the live one already matches;
//!   `menu/delete` for `button = []`; otherwise the live 个性化菜单 are removed, the default
//!   menu created and the configured 个性化菜单 published last to first (WeChat matches the
//!   newest first, and the file lists them in priority order). A menu WeChat would refuse
//!   never gets here: loading the config already judged it with WeChat's own rules.
//! - `pull` prints the live menu as TOML that `push` takes unchanged.
//!
//! The access_token comes from a 中控 over the configured store (see [`super::api`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::api::{Live, MenuApi};
use super::{diff, render, AppMenu};
use crate::config::{Config, Environment};
use crate::server::{http_client, open_store};
use crate::token::{TokenCore, Upstream};

/// `wxmp menu …`.
#[derive(Debug, Clone, Subcommand)]
pub enum MenuCommand {
    /// Compare the configured menu with the live one (exit 0 equal, 1 different, 2 trouble).
    Diff(Target),
    /// Publish the configured menu (checked with WeChat's rules first).
    Push(Target),
    /// Print the live menu as TOML that push accepts unchanged.
    Pull(Target),
}

/// Which config and app.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// Config file [default: $WXMP_CONFIG, then wxmp.toml].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The app [default: the only app in the file].
    #[arg(long, value_name = "NAME")]
    pub app: Option<String>,
}

impl MenuCommand {
    fn target(&self) -> &Target {
        match self {
            MenuCommand::Diff(t) | MenuCommand::Push(t) | MenuCommand::Pull(t) => t,
        }
    }
}

/// Runs the command; `default_config` is the file used without `--config`. What a user reads
/// goes to `out`; a failure is one line on `err`.
pub async fn run(
    command: MenuCommand,
    default_config: PathBuf,
    env: &dyn Environment,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> ExitCode {
    let trouble = if matches!(command, MenuCommand::Diff(_)) {
        2
    } else {
        1
    };
    match execute(&command, default_config, env, out).await {
        Ok(code) => code,
        Err(e) => {
            // `{e}`, not the chain: every message here already includes its cause.
            let _ = writeln!(err, "wxmp: {e}");
            ExitCode::from(trouble)
        }
    }
}

async fn execute(
    command: &MenuCommand,
    default_config: PathBuf,
    env: &dyn Environment,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let target = command.target();
    let path = target.config.clone().unwrap_or(default_config);
    let config = Config::load(&path, env).map_err(|e| {
        anyhow::anyhow!(
            "{} has {} problem(s); nothing was sent to WeChat:\n{e}",
            path.display(),
            e.problems.len()
        )
    })?;
    let app = pick_app(&config, target.app.as_deref(), &path)?;
    let api = menu_api(&config, &app).await?;
    let name = &app;
    match command {
        MenuCommand::Pull(_) => {
            let live = api.live().await?;
            writeln!(
                out,
                "# The live menu of apps.{name}, as `wxmp menu pull` read it."
            )?;
            write!(out, "{}", render::toml(name, &live.menu))?;
            Ok(ExitCode::SUCCESS)
        }
        MenuCommand::Diff(_) => {
            let wanted = configured(&config, name, &path)?;
            let live = api.live().await?;
            let (old, new) = (render::toml(name, &live.menu), render::toml(name, wanted));
            if old == new {
                writeln!(
                    out,
                    "apps.{name}: the live menu matches {}.",
                    path.display()
                )?;
                return Ok(ExitCode::SUCCESS);
            }
            writeln!(
                out,
                "apps.{name}: the live menu differs from {} (- live, + config; `wxmp menu push` publishes the config):\n",
                path.display()
            )?;
            write!(out, "{}", diff::render(&diff::lines(&old, &new)))?;
            Ok(ExitCode::from(1))
        }
        MenuCommand::Push(_) => {
            let wanted = configured(&config, name, &path)?;
            let live = api.live().await?;
            push(&api, name, wanted, live, out).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The app named on the command line, or the only app of the file.
fn pick_app(config: &Config, app: Option<&str>, path: &Path) -> anyhow::Result<String> {
    match app {
        Some(name) if config.apps.contains_key(name) => Ok(name.to_owned()),
        Some(name) => anyhow::bail!(
            "{} has no app {name:?} (it has: {})",
            path.display(),
            config.apps.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
        None if config.apps.len() == 1 => {
            Ok(config.apps.keys().next().cloned().unwrap_or_default())
        }
        None => anyhow::bail!(
            "name the app with --app (the file has {})",
            config.apps.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    }
}

fn configured<'c>(config: &'c Config, app: &str, path: &Path) -> anyhow::Result<&'c AppMenu> {
    config
        .app(app)
        .and_then(|a| a.menu.as_ref())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{} has no [apps.{app}.menu]: add [[apps.{app}.menu.button]] tables (`wxmp menu pull` prints the live ones), or button = [] for no menu",
                path.display()
            )
        })
}

async fn menu_api(config: &Config, app: &str) -> anyhow::Result<MenuApi> {
    let store = open_store(&config.store)
        .await
        .map_err(|e| anyhow::anyhow!("the store does not open: {e}"))?;
    let upstream = Upstream::new(http_client(), config.upstream.clone());
    let tokens = TokenCore::new(&config.apps, store, upstream);
    Ok(MenuApi::new(tokens, app))
}

async fn push(
    api: &MenuApi,
    name: &str,
    wanted: &AppMenu,
    live: Live,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if render::toml(name, &live.menu) == render::toml(name, wanted) {
        writeln!(
            out,
            "apps.{name}: the live menu already matches; nothing to push."
        )?;
        return Ok(());
    }
    if wanted.button.is_empty() {
        api.delete().await?;
        writeln!(
            out,
            "apps.{name}: menu deleted (button = [] in the config)."
        )?;
        return Ok(());
    }
    for id in &live.conditional_ids {
        api.del_conditional(id)
            .await
            .map_err(|e| anyhow::anyhow!("removing the live 个性化菜单 {id}: {e}"))?;
    }
    api.create(&wanted.button).await?;
    let total = wanted.conditionalmenu.len();
    for (i, c) in wanted.conditionalmenu.iter().enumerate().rev() {
        api.add_conditional(c).await.map_err(|e| {
            anyhow::anyhow!(
                "the default menu is published, but conditionalmenu[{i}] is not ({} of {total} published): {e}",
                total - 1 - i
            )
        })?;
    }
    writeln!(
        out,
        "apps.{name}: menu pushed ({} button(s){}).",
        wanted.button.len(),
        if total > 0 {
            format!(", {total} 个性化菜单")
        } else {
            String::new()
        }
    )?;
    Ok(())
}

//! Placeholder: `wxmp send` (being written).
use std::process::ExitCode;
/// Arguments of `wxmp send`.
#[derive(clap::Args)]
pub struct SendArgs {}
/// Runs `wxmp send`.
pub async fn run(_args: SendArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet implemented")
}

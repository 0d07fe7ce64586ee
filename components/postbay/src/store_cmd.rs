//! `postbay store check [--repair]`: finds (and removes) blobs on the volume that no message
//! row points at, which a crash between a blob's fsync and its row's commit leaves behind.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use postbay_store::Store;

use crate::config::Config;

#[derive(clap::Subcommand)]
pub enum StoreCommand {
    /// Report blobs without a message row; with --repair, remove them.
    Check(CheckArgs),
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// Remove the orphans found (each checked again just before).
    #[arg(long)]
    repair: bool,
    /// Blobs younger than this are never touched: a delivery may still be committing them.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    grace: Duration,
    /// Data folder (default: the configured one).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Database (default: the configured one).
    #[arg(long)]
    database_url: Option<String>,
}

pub async fn run(mut config: Config, command: StoreCommand) -> Result<()> {
    let StoreCommand::Check(args) = command;
    if let Some(data) = args.data {
        config.data_dir = data;
    }
    if let Some(url) = args.database_url {
        config.database_url = url;
    }
    let store = Store::open(&config.database_url(), &config.mail_root())
        .await
        .context("opening the store")?;
    let check = store.check_blobs(args.grace).await?;
    let bytes: u64 = check.orphans.iter().map(|o| o.size).sum();
    for orphan in &check.orphans {
        println!(
            "orphan {} ({} bytes, {} old)",
            orphan.rel,
            orphan.size,
            humantime::format_duration(Duration::from_secs(orphan.age.as_secs()))
        );
    }
    println!(
        "{} blobs, {} orphans ({bytes} bytes), {} younger than {} not checked",
        check.blobs,
        check.orphans.len(),
        check.young,
        humantime::format_duration(args.grace)
    );
    if args.repair && !check.orphans.is_empty() {
        let removed = store.remove_orphans(check.orphans).await?;
        println!("removed {removed} orphans");
    }
    store.close().await;
    Ok(())
}

//! `postbay queue list [--json]`: what every smtp replica's queue holds, read from the
//! shared volume (read-only, safe beside running replicas).

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::config::Config;

#[derive(clap::Subcommand)]
pub enum QueueCommand {
    /// List queued and parked messages of every replica, oldest first.
    List(ListArgs),
}

#[derive(clap::Args)]
pub struct ListArgs {
    /// One JSON object per message (node, parked, size, envelope) instead of a table.
    #[arg(long)]
    json: bool,
    /// Data folder (default: the configured one).
    #[arg(long)]
    data: Option<PathBuf>,
}

pub async fn run(mut config: Config, command: QueueCommand) -> Result<()> {
    let QueueCommand::List(args) = command;
    if let Some(data) = args.data {
        config.data_dir = data;
    }
    let spool = config.spool();
    let listed = tokio::task::spawn_blocking(move || postbay_smtp::queue::list_all(&spool))
        .await?
        .context("reading the queues")?;
    let now = postbay_store::now_unix();
    if args.json {
        for item in &listed {
            println!("{}", serde_json::to_string(item)?);
        }
        return Ok(());
    }
    for item in &listed {
        let e = &item.envelope;
        let age = humantime::format_duration(std::time::Duration::from_secs(
            (now - e.received_at).max(0) as u64,
        ));
        let state = if item.parked {
            "parked".to_string()
        } else if e.next_attempt > now {
            format!(
                "retry in {}",
                humantime::format_duration(std::time::Duration::from_secs(
                    (e.next_attempt - now) as u64
                ))
            )
        } else {
            "due".to_string()
        };
        let rcpts: Vec<&str> = e.recipients.iter().map(|r| r.address.as_str()).collect();
        println!(
            "{} {} {} bytes, {age} old, {} attempts, {state}: <{}> -> {}",
            e.id,
            item.node,
            item.size,
            e.attempts,
            e.mail_from,
            rcpts.join(", ")
        );
    }
    let parked = listed.iter().filter(|l| l.parked).count();
    let nodes: std::collections::BTreeSet<&str> = listed.iter().map(|l| l.node.as_str()).collect();
    println!(
        "{} messages ({parked} parked) in {} queues",
        listed.len(),
        nodes.len()
    );
    Ok(())
}

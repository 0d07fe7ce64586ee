//! `postbay queue list|show|retry|delete|bounce`: what every smtp replica's queue holds, and
//! an admin's say over it, on the shared volume (in a pod: `kubectl exec`). Listing and
//! showing only read. Changes to a queued message go to the replica that owns its queue as a
//! request file ([`postbay_smtp::queue::requests`]), so nothing races a delivery in flight;
//! parked messages (never retried) are changed directly.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::config::Config;
use postbay_smtp::queue::requests::{self, Action};
use postbay_smtp::queue::{self as q, Listed};

#[derive(clap::Subcommand)]
pub enum QueueCommand {
    /// List queued and parked messages of every replica, oldest first.
    List(ListArgs),
    /// Show one message: its envelope, state and header section.
    Show(IdArgs),
    /// Try a message (or, with --all, every waiting message) at once.
    Retry(RetryArgs),
    /// Remove a message without delivering it and without a bounce.
    Delete(IdArgs),
    /// Give up on a message now: every recipient left fails and the sender gets a DSN.
    Bounce(IdArgs),
}

#[derive(clap::Args)]
pub struct ListArgs {
    /// One JSON object per message (node, parked, size, envelope) instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args)]
pub struct IdArgs {
    /// The queue id (as `postbay queue list` shows it).
    id: String,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args)]
pub struct RetryArgs {
    /// The queue id; leave out with --all.
    id: Option<String>,
    /// Every waiting message of every replica.
    #[arg(long, conflicts_with = "id")]
    all: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args)]
pub struct Common {
    /// Data folder (default: the configured one).
    #[arg(long)]
    data: Option<PathBuf>,
    /// How long to wait for the owning replica to carry a request out.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    wait: Duration,
}

pub async fn run(mut config: Config, command: QueueCommand) -> Result<()> {
    let common = match &command {
        QueueCommand::List(a) => &a.common,
        QueueCommand::Show(a) | QueueCommand::Delete(a) | QueueCommand::Bounce(a) => &a.common,
        QueueCommand::Retry(a) => &a.common,
    };
    if let Some(data) = &common.data {
        config.data_dir = data.clone();
    }
    let wait = common.wait;
    let spool = config.spool();
    let listed = {
        let spool = spool.clone();
        tokio::task::spawn_blocking(move || q::list_all(&spool))
            .await?
            .context("reading the queues")?
    };
    match command {
        QueueCommand::List(args) => list(&listed, args.json),
        QueueCommand::Show(args) => show(&spool, find(&listed, &args.id)?),
        QueueCommand::Retry(RetryArgs { all: true, .. }) => retry_all(&spool, &listed, wait).await,
        QueueCommand::Retry(RetryArgs { id: None, .. }) => {
            bail!("name a queue id, or --all")
        }
        QueueCommand::Retry(RetryArgs { id: Some(id), .. }) => {
            change(&spool, find(&listed, &id)?, Action::Retry, wait).await
        }
        QueueCommand::Delete(args) => {
            change(&spool, find(&listed, &args.id)?, Action::Delete, wait).await
        }
        QueueCommand::Bounce(args) => {
            change(&spool, find(&listed, &args.id)?, Action::Bounce, wait).await
        }
    }
}

fn find<'a>(listed: &'a [Listed], id: &str) -> Result<&'a Listed> {
    listed
        .iter()
        .find(|l| l.envelope.id.eq_ignore_ascii_case(id))
        .with_context(|| format!("no message {id} in any queue (delivered already?)"))
}

fn state(item: &Listed, now: i64) -> String {
    let e = &item.envelope;
    if item.parked {
        "parked".to_string()
    } else if e.next_attempt > now {
        format!(
            "retry in {}",
            humantime::format_duration(Duration::from_secs((e.next_attempt - now) as u64))
        )
    } else {
        "due".to_string()
    }
}

fn list(listed: &[Listed], json: bool) -> Result<()> {
    let now = postbay_store::now_unix();
    if json {
        for item in listed {
            println!("{}", serde_json::to_string(item)?);
        }
        return Ok(());
    }
    for item in listed {
        let e = &item.envelope;
        let age =
            humantime::format_duration(Duration::from_secs((now - e.received_at).max(0) as u64));
        let rcpts: Vec<&str> = e.recipients.iter().map(|r| r.address.as_str()).collect();
        println!(
            "{} {} {} bytes, {age} old, {} attempts, {}: <{}> -> {}",
            e.id,
            item.node,
            item.size,
            e.attempts,
            state(item, now),
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

fn show(spool: &Path, item: &Listed) -> Result<()> {
    let now = postbay_store::now_unix();
    let e = &item.envelope;
    println!("id:        {}", e.id);
    println!(
        "queue:     {}{}",
        item.node,
        if item.parked { " (parked)" } else { "" }
    );
    println!("state:     {}, {} attempts", state(item, now), e.attempts);
    println!(
        "received:  {} from {} ({})",
        humantime::format_rfc3339_seconds(unix(e.received_at)),
        e.client_ip,
        e.helo
    );
    println!("sender:    <{}>", e.mail_from);
    for r in &e.recipients {
        let kind = if r.local { "local" } else { "remote" };
        if r.original == r.address {
            println!("recipient: <{}> ({kind})", r.address);
        } else {
            println!("recipient: <{}> ({kind}, for <{}>)", r.address, r.original);
        }
    }
    println!("size:      {} bytes", item.size);
    let path = q::file_of(spool, item);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let message = bytes.splitn(2, |b| *b == b'\n').nth(1).unwrap_or_default();
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .unwrap_or(message.len());
    println!();
    print!("{}", String::from_utf8_lossy(&message[..end]));
    Ok(())
}

fn unix(secs: i64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64)
}

/// Retry, delete or bounce one message.
async fn change(spool: &Path, item: &Listed, action: Action, wait: Duration) -> Result<()> {
    let id = &item.envelope.id;
    let dir = spool.join("queue").join(&item.node);
    if item.parked {
        match action {
            Action::Retry => {
                q::unpark(&dir, id)?;
                println!(
                    "{id}: back in the queue of {}; its next scan tries it",
                    item.node
                );
            }
            Action::Delete => {
                std::fs::remove_file(q::file_of(spool, item))?;
                println!("{id}: deleted (it was parked)");
            }
            Action::Bounce => bail!(
                "{id} is parked: its failure was handled already (a null sender gets no \
                 bounce); delete it or retry it"
            ),
        }
        return Ok(());
    }
    let request = requests::file(&dir, Some(id), action)?;
    if !carried_out(&request, wait).await {
        return pending(&dir, &item.node, id, action);
    }
    // The owner takes the request file away when it starts the attempt, which then runs
    // on: a delete or bounce may still be finishing (the DSN being queued), a retry still
    // talking to the remote server, for a moment.
    let settle = Instant::now() + SETTLE;
    let still = loop {
        let still = q::list_all(spool)?
            .into_iter()
            .find(|l| &l.envelope.id == id);
        // A retry has finished once the message is gone or its attempt is counted.
        let finishing = still.as_ref().is_some_and(|l| {
            !l.parked
                && (!matches!(action, Action::Retry)
                    || l.envelope.attempts <= item.envelope.attempts)
        });
        if !finishing || Instant::now() >= settle {
            break still;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    match (action, still) {
        (Action::Retry, None) => println!("{id}: retried and delivered"),
        (Action::Retry, Some(l)) => println!(
            "{id}: retried; still queued ({}, {} attempts)",
            state(&l, postbay_store::now_unix()),
            l.envelope.attempts
        ),
        (Action::Delete, None) => println!("{id}: deleted"),
        (Action::Bounce, None) => {
            println!("{id}: bounced; a DSN goes to <{}>", item.envelope.mail_from)
        }
        (Action::Bounce, Some(l)) if l.parked => {
            println!("{id}: bounced, but no DSN could be sent (null sender): parked")
        }
        (_, Some(_)) => println!("{id}: {} done, the message is still listed", action.name()),
    }
    Ok(())
}

async fn retry_all(spool: &Path, listed: &[Listed], wait: Duration) -> Result<()> {
    let nodes: std::collections::BTreeSet<&str> = listed
        .iter()
        .filter(|l| !l.parked)
        .map(|l| l.node.as_str())
        .collect();
    if nodes.is_empty() {
        println!("no waiting messages");
        return Ok(());
    }
    for node in nodes {
        let dir = spool.join("queue").join(node);
        let request = requests::file(&dir, None, Action::Retry)?;
        let count = listed
            .iter()
            .filter(|l| !l.parked && l.node == node)
            .count();
        if carried_out(&request, wait).await {
            println!("{node}: {count} messages retried");
        } else {
            pending(&dir, node, "all", Action::Retry)?;
        }
    }
    Ok(())
}

/// Waits until the owner has removed the request file.
/// How long a carried-out request's attempt may take to finish.
const SETTLE: Duration = Duration::from_secs(10);

async fn carried_out(request: &Path, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if !request.exists() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    !request.exists()
}

fn pending(dir: &Path, node: &str, id: &str, action: Action) -> Result<()> {
    if q::owner_running(dir) {
        println!(
            "{id}: {} requested; replica {node} has not carried it out yet (a delivery in \
             flight finishes first)",
            action.name()
        );
    } else {
        println!(
            "{id}: {} requested; no process runs queue {node} now: it is carried out when \
             {node} starts again or another replica adopts the queue",
            action.name()
        );
    }
    Ok(())
}

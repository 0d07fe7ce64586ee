//! `postbay`: one binary, one subcommand per role. `main` only wires.

mod config;
mod run;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "postbay",
    version,
    about = "Postbay: a Kubernetes-native mail platform"
)]
struct Cli {
    /// YAML configuration file (settings can also come from POSTBAY_* variables).
    #[arg(long, global = true, env = "POSTBAY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every component in one process on 127.0.0.1 (SQLite and self-signed TLS by default).
    Dev(run::DevArgs),
    /// Run the SMTP server (MX on 25) with its queue.
    Smtp,
    /// Run the mailbox component: the LMTP delivery listener (IMAP and POP3 join it).
    Imap,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let config = config::Config::load(cli.config.as_deref())?;
        match cli.command {
            Command::Dev(args) => run::dev(config, args).await,
            Command::Smtp => run::smtp(config).await,
            Command::Imap => run::mailbox(config).await,
        }
    })
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("POSTBAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

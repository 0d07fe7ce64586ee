//! `postbay operator`: the Kubernetes operator (crate postbay-operator), in-cluster or with
//! KUBECONFIG. Its settings come from its own file and flags: the configuration of the mail
//! components refuses keys it does not know.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use postbay_operator::run::Options;
use postbay_operator::Settings;

use crate::config::Config;

#[derive(clap::Args)]
pub struct OperatorArgs {
    /// Operator settings (YAML: mail, externalDns, metricsAddr, leaderElection, identity).
    #[arg(long)]
    settings: Option<PathBuf>,
    /// Database the rows go to (default: the configured one).
    #[arg(long)]
    database_url: Option<String>,
    /// MX host for DNS guidance; repeat for several. Overrides the settings file.
    #[arg(long = "mail-host")]
    mail_hosts: Vec<String>,
    /// Listener of /healthz, /readyz and /metrics (default 0.0.0.0:8080).
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    /// Reconcile without taking the leader Lease (a single replica, or local testing).
    #[arg(long)]
    no_leader_election: bool,
    /// Also write external-dns DNSEndpoint objects.
    #[arg(long)]
    external_dns: bool,
    /// Resolver (ip:port) to check that each DNS record is published.
    #[arg(long)]
    dns_check_server: Option<SocketAddr>,
}

pub async fn operator(mut config: Config, args: OperatorArgs) -> Result<()> {
    let mut settings = Settings::load(args.settings.as_deref())?;
    if !args.mail_hosts.is_empty() {
        settings.mail.mx = args.mail_hosts;
    }
    if let Some(addr) = args.metrics_addr {
        settings.metrics_addr = addr;
    }
    if args.no_leader_election {
        settings.leader_election.enabled = false;
    }
    if args.external_dns {
        settings.external_dns = true;
    }
    if let Some(server) = args.dns_check_server {
        settings.dns_check_server = Some(server);
    }
    if let Some(url) = args.database_url {
        config.database_url = url;
    }
    postbay_operator::run(Options {
        settings,
        database_url: config.database_url(),
        mail_root: config.mail_root(),
        hostname: config.hostname.clone(),
    })
    .await?;
    Ok(())
}

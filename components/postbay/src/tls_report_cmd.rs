//! `postbay tls-report [--day YYYY-MM-DD]`: the SMTP TLS reports (RFC 8460 §4) of one day,
//! made from the counts every smtp replica keeps on the shared volume, as JSON lines (one
//! report per recipient domain with a policy). Sending them to the domains' `rua` is a
//! later step; this is what would be sent.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::config::Config;
use postbay_smtp::outbound::tlsrpt;

#[derive(clap::Args)]
pub struct TlsReportArgs {
    /// The UTC day (default: today).
    #[arg(long)]
    day: Option<String>,
    /// Data folder (default: the configured one).
    #[arg(long)]
    data: Option<PathBuf>,
}

pub async fn run(mut config: Config, args: TlsReportArgs) -> Result<()> {
    if let Some(data) = args.data {
        config.data_dir = data;
    }
    let day = args.day.unwrap_or_else(tlsrpt::today);
    let valid = day.len() == 10
        && day.char_indices().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        });
    if !valid {
        bail!("--day {day:?}: expected YYYY-MM-DD");
    }
    let dir = config.spool().join("tls-rpt");
    let counts = tlsrpt::merged(&dir, &day)
        .with_context(|| format!("reading {}", dir.join(&day).display()))?;
    let organization = config.hostname.clone();
    let contact = format!("postmaster@{organization}");
    for report in tlsrpt::reports(&organization, &contact, &day, &counts) {
        println!("{report}");
    }
    if counts.is_empty() {
        eprintln!("no TLS policy sessions recorded for {day}");
    }
    Ok(())
}

//! `postbay apply`: the operator's reconcile core run once over YAML files, without a
//! cluster. All or nothing: every document and every cross-reference is checked first, and
//! a single problem means nothing is written.

mod checks;
mod inputs;

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use postbay_api::{Bundle, Resource};
use postbay_reconcile::dkim::KeyMaterial;
use postbay_reconcile::key_files::{KeyFiles, KeySource};
use postbay_reconcile::{alias, dkim, dns, domain, mailbox, MailHosts, Outcome};
use postbay_store::Store;

use crate::config::Config;
use inputs::Document;

#[derive(clap::Args)]
pub struct ApplyArgs {
    /// Manifest file, folder of *.yaml files, or `-` for standard input; may be repeated.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
    /// Data folder: the SQLite database (unless --database-url) and DKIM key files.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Use this database instead of SQLite in the data folder.
    #[arg(long)]
    database_url: Option<String>,
    /// Mail host for the DNS records (MX, SRV, MTA-STS); may be repeated for several MX
    /// hosts. Default: the configured hostname.
    #[arg(long = "mail-host")]
    mail_hosts: Vec<String>,
    /// Check everything, write nothing.
    #[arg(long)]
    dry_run: bool,
}

impl ApplyArgs {
    /// What `postbay dev -f FILE` applies before it starts listening: the files, against
    /// the dev configuration's data folder and database.
    pub fn for_files(files: Vec<PathBuf>) -> ApplyArgs {
        ApplyArgs {
            files,
            data: None,
            database_url: None,
            mail_hosts: Vec::new(),
            dry_run: false,
        }
    }
}

pub async fn apply(mut config: Config, args: ApplyArgs) -> Result<()> {
    if let Some(data) = args.data {
        config.data_dir = data;
    }
    if let Some(url) = args.database_url {
        config.database_url = url;
    }
    let sources = inputs::read(&args.files)?;
    let docs = inputs::parse(&sources).map_err(|e| anyhow::anyhow!("{e}\nnothing applied"))?;
    let bundle: Bundle = docs.iter().map(|d| d.resource.clone()).collect();

    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let url = config.database_url();
    let store = Store::open(&url, &config.mail_root())
        .await
        .context("opening the store")?;

    let problems = checks::check(&docs, &bundle, &store).await?;
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("error: {}: {}", p.at, p.message);
        }
        anyhow::bail!(
            "nothing applied: {} problem{} found",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
    }
    if args.dry_run {
        println!("{} resources valid (dry run, nothing applied)", docs.len());
        return Ok(());
    }

    // A closed stdout (`| head`) must not stop an apply halfway: output errors are ignored.
    let mut out = std::io::stdout().lock();
    let key_files = KeyFiles::new(&config.data_dir);
    let mut blocked = 0;
    for doc in ordered(&docs) {
        let (outcome, note) = apply_retrying(&store, &bundle, &key_files, doc).await?;
        let label = label(doc);
        match outcome {
            Outcome::Applied(change) => {
                let _ = writeln!(out, "{label} {}{note}", change.verb());
            }
            Outcome::Blocked(why) => {
                // Only a concurrent writer gets here: the checks above saw the same store.
                eprintln!("error: {}: {why}", doc.describe());
                blocked += 1;
            }
        }
    }

    let hosts = mail_hosts(&config, args.mail_hosts);
    for doc in &docs {
        if let Resource::Domain(d) = &doc.resource {
            let keys = store.dkim_keys(&d.spec.domain).await?;
            let _ = writeln!(out, "\nDNS records to publish for {}:", d.spec.domain);
            for record in dns::domain_records(&d.spec, &hosts, &keys) {
                let _ = writeln!(out, "  {}    ; {}", dns::zone_line(&record), record.purpose);
            }
        }
    }
    store.close().await;
    if blocked > 0 {
        anyhow::bail!("{blocked} resources changed by someone else meanwhile were not applied");
    }
    Ok(())
}

/// Domains first, then what lives under them; Secrets are only read.
fn ordered(docs: &[Document]) -> Vec<&Document> {
    let rank = |doc: &&Document| match doc.resource {
        Resource::Domain(_) => 0,
        Resource::Mailbox(_) => 1,
        Resource::Alias(_) => 2,
        Resource::DkimKey(_) => 3,
        Resource::Secret(_) => 4,
    };
    let mut out: Vec<&Document> = docs
        .iter()
        .filter(|d| !matches!(d.resource, Resource::Secret(_)))
        .collect();
    out.sort_by_key(rank);
    out
}

/// [`apply_one`], again when the database chose it as a deadlock victim: two applies (or an
/// apply and the operator) writing the same rows at once on MariaDB, where InnoDB rolls the
/// loser's transaction back and asks for it to be restarted. Applying is idempotent.
async fn apply_retrying(
    store: &Store,
    bundle: &Bundle,
    key_files: &KeyFiles,
    doc: &Document,
) -> Result<(Outcome, String)> {
    let mut attempt = 1;
    loop {
        match apply_one(store, bundle, key_files, doc).await {
            Err(e) if attempt < 5 && is_conflict(&e) => {
                tracing::info!(error = %e, attempt, "write conflict, applying again");
                tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn is_conflict(e: &anyhow::Error) -> bool {
    e.chain().any(postbay_store::is_conflict)
}

async fn apply_one(
    store: &Store,
    bundle: &Bundle,
    key_files: &KeyFiles,
    doc: &Document,
) -> Result<(Outcome, String)> {
    let owner = checks::owner(doc);
    let at = || doc.describe();
    let outcome = match &doc.resource {
        Resource::Domain(d) => domain::apply(store, &owner, &d.spec).await,
        Resource::Mailbox(m) => {
            let password = bundle
                .mailbox_password(m)
                .context("password vanished after the checks")?;
            mailbox::apply(store, &owner, &m.spec, &password).await
        }
        Resource::Alias(a) => alias::apply(store, &owner, &a.spec).await,
        Resource::DkimKey(k) => {
            let supplied = match &k.spec.secret_ref {
                Some(secret) => checks::dkim_secret(bundle, doc, &secret.name).map(|(_, pem)| pem),
                None => None,
            };
            let (material, source): (KeyMaterial, KeySource) = key_files
                .material(&k.spec, supplied.as_deref())
                .with_context(at)?;
            let note = match source {
                KeySource::Supplied => " (key from Secret)",
                KeySource::Kept => "",
                KeySource::Generated => " (key generated)",
            };
            let outcome = dkim::apply(store, &owner, &k.spec, &material)
                .await
                .with_context(at)?;
            return Ok((outcome, note.to_string()));
        }
        Resource::Secret(_) => unreachable!("Secrets are filtered out by `ordered`"),
    };
    Ok((outcome.with_context(at)?, String::new()))
}

/// `kind/name` as kubectl prints it, with the namespace when it is not `default`.
fn label(doc: &Document) -> String {
    let r = &doc.resource;
    let base = format!("{}/{}", r.kind().to_ascii_lowercase(), r.name());
    match r.namespace() {
        "default" => base,
        ns => format!("{base} (namespace {ns})"),
    }
}

fn mail_hosts(config: &Config, given: Vec<String>) -> MailHosts {
    let mut hosts = MailHosts::single(given.first().unwrap_or(&config.hostname));
    if !given.is_empty() {
        hosts.mx = given;
    }
    hosts
}

//! Starting components: each role binds its listeners, prints one line per listener, and
//! runs until the process is stopped. `dev` runs them all in one process.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use postbay_net::{ConnectionGate, ConnectionLimits, ProxyPolicy, TlsProvider, TlsSettings};
use postbay_store::Store;

use crate::config::Config;

#[derive(clap::Args)]
pub struct DevArgs {
    /// Data folder: SQLite database, mail, queue and the self-signed certificate.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Listeners go on 127.0.0.1 at this number plus the standard port (25, 24, 143, ...).
    #[arg(long, default_value_t = 10000)]
    port_base: u16,
    /// Use this database instead of SQLite in the data folder (e.g. mysql://root@127.0.0.1/postbay).
    #[arg(long)]
    database_url: Option<String>,
    /// Apply these manifests (files or folders of *.yaml, as `postbay apply -f`) first.
    #[arg(short = 'f', long = "filename")]
    files: Vec<PathBuf>,
}

/// Everything in one process, for a laptop or a test.
pub async fn dev(mut config: Config, args: DevArgs) -> Result<()> {
    if let Some(data) = args.data {
        config.data_dir = data;
    }
    if let Some(url) = args.database_url {
        config.database_url = url;
    }
    let at = |port: u16| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), args.port_base + port);
    config.lmtp.listen.get_or_insert(at(24));
    config.smtp.listen.get_or_insert(at(25));
    config.submission.listen.get_or_insert(at(587));
    config.submission.listen_tls.get_or_insert(at(465));
    config.pop3.listen.get_or_insert(at(110));
    config.pop3.listen_tls.get_or_insert(at(995));
    config.imap.access.listen.get_or_insert(at(143));
    config.imap.access.listen_tls.get_or_insert(at(993));
    config.imap.allow_plaintext_auth = true;
    config.admin.listen.get_or_insert(at(8080));
    config.filter.listen.get_or_insert(at(11333));
    if config.filter.milter_listen()? == crate::config::MilterListen::Default {
        config.filter.milter_listen = Some(at(11332).to_string());
    }
    let filter = config.filter.listen.expect("set above");
    config
        .smtp
        .filter
        .get_or_insert_with(|| format!("http://{filter}"));
    let lmtp = config.lmtp.listen.expect("set above");
    config.smtp.lmtp_target.get_or_insert(lmtp.to_string());
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    if !args.files.is_empty() {
        crate::apply::apply(
            config.clone(),
            crate::apply::ApplyArgs::for_files(args.files),
        )
        .await?;
    }
    let mut running = Running::start(&config).await?;
    let store = open_store(&config, &running).await?;
    let tls = tls_provider(&config).await?;
    start_mailbox(&config, store.clone(), &mut running).await?;
    let authenticator = crate::config::authenticator(&config, &store);
    start_access(
        &config,
        store.clone(),
        tls.clone(),
        &authenticator,
        &mut running,
    )
    .await?;
    start_filter(&config, store.clone(), &mut running).await?;
    // Off by default here (decision 31): a laptop does not send test mail to the internet.
    start_smtp(&config, store, tls, &authenticator, false, &mut running).await?;
    running.health.set_started();
    println!(
        "postbay dev ready (data {}, database {})",
        config.data_dir.display(),
        redact(&config.database_url())
    );
    running.shutdown().await;
    Ok(())
}

pub async fn smtp(mut config: Config) -> Result<()> {
    config
        .smtp
        .listen
        .get_or_insert(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 25));
    config
        .smtp
        .lmtp_target
        .get_or_insert_with(|| "127.0.0.1:24".to_string());
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    config
        .submission
        .listen
        .get_or_insert(SocketAddr::new(any, 587));
    config
        .submission
        .listen_tls
        .get_or_insert(SocketAddr::new(any, 465));
    let mut running = Running::start(&config).await?;
    let store = open_store(&config, &running).await?;
    let tls = tls_provider(&config).await?;
    let authenticator = crate::config::authenticator(&config, &store);
    start_smtp(&config, store, tls, &authenticator, true, &mut running).await?;
    running.health.set_started();
    println!("postbay smtp ready");
    running.shutdown().await;
    Ok(())
}

/// The spam filter alone (Rspamd's HTTP protocol on 11333).
pub async fn filter(mut config: Config) -> Result<()> {
    config
        .filter
        .listen
        .get_or_insert(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 11333));
    let mut running = Running::start(&config).await?;
    // Bayes tokens are in the database, shared by every filter replica.
    let store = open_store(&config, &running).await?;
    start_filter(&config, store, &mut running).await?;
    running.health.set_started();
    println!("postbay filter ready");
    running.shutdown().await;
    Ok(())
}

/// Binds the filter's listener; its Bayes tokens are in the store's database.
async fn start_filter(config: &Config, store: Store, running: &mut Running) -> Result<()> {
    let listen = config
        .filter
        .listen
        .expect("caller sets the filter address");
    let tokens = Arc::new(postbay_filter::bayes::StoreTokens(store.clone()));
    let filter = Arc::new(
        postbay_filter::build(config.filter_settings()?, tokens, Some(store))
            .context("setting up the filter")?,
    );
    let listener = postbay_net::listener::bind(listen)
        .await
        .with_context(|| format!("binding filter on {listen}"))?;
    println!("filter listening on {}", listener.local_addr()?);
    running.listeners.push(tokio::spawn(postbay_filter::serve(
        listener,
        filter.clone(),
    )));
    if let crate::config::MilterListen::At(at) = config.filter.milter_listen()? {
        let listener = postbay_net::listener::bind(at)
            .await
            .with_context(|| format!("binding the filter's milter listener on {at}"))?;
        println!("filter milter listening on {}", listener.local_addr()?);
        running
            .listeners
            .push(tokio::spawn(postbay_filter::milter::serve(
                listener,
                filter,
                config.filter.milter_idle_timeout,
            )));
    }
    Ok(())
}

pub async fn mailbox(mut config: Config) -> Result<()> {
    config
        .lmtp
        .listen
        .get_or_insert(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 24));
    let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
    config
        .pop3
        .listen
        .get_or_insert(SocketAddr::new(any.ip(), 110));
    config
        .pop3
        .listen_tls
        .get_or_insert(SocketAddr::new(any.ip(), 995));
    let mut running = Running::start(&config).await?;
    let store = open_store(&config, &running).await?;
    let tls = tls_provider(&config).await?;
    start_mailbox(&config, store.clone(), &mut running).await?;
    let authenticator = crate::config::authenticator(&config, &store);
    start_access(&config, store, tls, &authenticator, &mut running).await?;
    running.health.set_started();
    println!("postbay imap ready");
    running.shutdown().await;
    Ok(())
}

/// Opens the store (waiting for the database), then tells readiness how to check it and
/// samples the pool for the metrics.
async fn open_store(config: &Config, running: &Running) -> Result<Store> {
    // The default SQLite file lives in the data folder (dev, or a filter started alone).
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let url = config.database_url();
    let store = Store::open(&url, &config.mail_root())
        .await
        .with_context(|| format!("opening store {}", redact(&url)))?;
    let probe = store.clone();
    running.health.set_database_check(move || {
        let probe = probe.clone();
        async move { probe.ping().await }
    });
    let sampled = store.clone();
    tokio::spawn(async move {
        loop {
            let pool = sampled.pool();
            postbay_telemetry::db_pool(pool.size(), pool.num_idle());
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
    });
    Ok(store)
}

/// How often gauges that are read rather than counted (queue, pool) are refreshed.
const SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps the queue gauges current: messages waiting and the oldest one's age (queue ids
/// are ULIDs, which carry their creation time).
async fn sample_queue(queue: postbay_smtp::queue::Queue) {
    loop {
        if let Ok(ids) = queue.scan().await {
            let oldest = ids
                .first()
                .and_then(|id| ulid::Ulid::from_string(id).ok())
                .and_then(|u| u.datetime().elapsed().ok())
                .unwrap_or_default();
            postbay_telemetry::queue_depth(ids.len(), oldest);
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

async fn tls_provider(config: &Config) -> Result<TlsProvider> {
    let settings = TlsSettings {
        cert_path: config.tls.cert.clone(),
        key_path: config.tls.key.clone(),
        self_signed_names: vec![config.hostname.clone()],
        self_signed_dir: Some(config.data_dir.join("tls")),
    };
    TlsProvider::new(settings).await.context("setting up TLS")
}

async fn start_smtp(
    config: &Config,
    store: Store,
    tls: TlsProvider,
    authenticator: &postbay_auth::Authenticator,
    outbound_default: bool,
    running: &mut Running,
) -> Result<()> {
    let listen = config.smtp.listen.expect("caller sets the SMTP address");
    let target = config
        .smtp
        .lmtp_target
        .clone()
        .expect("caller sets the LMTP target");
    let (queue, wake) = postbay_smtp::queue::Queue::open(&config.spool(), &config.node_id)?;
    let lmtp = Arc::new(postbay_smtp::lmtp::client::LmtpClient::new(
        target,
        config.hostname.clone(),
    ));
    let outbound = if config.outbound_enabled(outbound_default) {
        let settings = config.outbound_settings()?;
        tracing::info!(
            mx_port = settings.mx_port,
            nameservers = ?settings.nameservers,
            relayhost = settings.relay.as_ref().map(|r| format!("{}:{}", r.host, r.port)),
            "outbound delivery enabled"
        );
        let outbound = Arc::new(
            postbay_smtp::outbound::Outbound::new(settings)
                .context("setting up outbound delivery")?,
        );
        // The DNSSEC check now, so the log says at start whether DANE is on; then the TLS
        // report counts go to disk every 10 s and at shutdown.
        let at_start = outbound.clone();
        tokio::spawn(async move {
            at_start.dane_enabled().await;
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
            loop {
                tick.tick().await;
                at_start.flush_reports();
            }
        });
        let at_stop = outbound.clone();
        running
            .at_stop
            .push(Box::new(move || at_stop.flush_reports()));
        Some(outbound)
    } else {
        tracing::info!("outbound delivery disabled: mail for remote domains stays queued");
        None
    };
    let srs = config.srs()?;
    if let Some(srs) = &srs {
        tracing::info!(domain = srs.domain, "SRS on for forwarded mail");
    }
    let runner = postbay_smtp::queue::runner::Runner::new(
        queue.clone(),
        lmtp,
        outbound,
        store.clone(),
        config.hostname.clone(),
        postbay_smtp::queue::runner::RunnerSettings {
            concurrency: config.smtp.queue_concurrency,
            per_destination: config.outbound.max_per_domain,
            adopt_interval: config.smtp.queue_adopt_interval,
            delay_warning: Some(config.smtp.delay_warning_time).filter(|d| !d.is_zero()),
            srs: srs.clone(),
            scan_interval: config
                .smtp
                .queue_scan_interval
                .max(std::time::Duration::from_millis(100)),
            ..Default::default()
        },
    );
    tokio::spawn(runner.run(wake));
    tokio::spawn(sample_queue(queue.clone()));
    let signer = postbay_dkim::Signer::new(
        store.clone(),
        postbay_dkim::KeySource {
            keys_dir: config.dkim.keys_dir.clone(),
        },
    );
    let ctx = Arc::new(postbay_smtp::ServerContext {
        config: postbay_smtp::SmtpConfig {
            srs,
            ..config.smtp_config()
        },
        auth: authenticator.for_protocol("smtp"),
        signer,
        sends: Default::default(),
        store,
        queue,
    });
    use postbay_smtp::server::Role;
    let mx = Role::Mx {
        auth: config.submission.auth_on_mx,
    };
    let smtp = &config.smtp;
    let sub = &config.submission;
    let mut doors = vec![(
        "smtp (mx)",
        listen,
        mx,
        false,
        &smtp.proxy_trusted,
        smtp.max_connections,
        smtp.max_connections_per_ip,
    )];
    if let Some(at) = sub.listen {
        let limits = (sub.max_connections, sub.max_connections_per_ip);
        doors.push((
            "submission",
            at,
            Role::Submission,
            false,
            &sub.proxy_trusted,
            limits.0,
            limits.1,
        ));
    }
    if let Some(at) = sub.listen_tls {
        let limits = (sub.max_connections, sub.max_connections_per_ip);
        doors.push((
            "submissions",
            at,
            Role::Submission,
            true,
            &sub.proxy_trusted,
            limits.0,
            limits.1,
        ));
    }
    for (name, at, role, implicit_tls, trusted, max_connections, max_per_ip) in doors {
        let listener = postbay_net::listener::bind(at)
            .await
            .with_context(|| format!("binding {name} on {at}"))?;
        let settings = postbay_smtp::server::ListenerSettings {
            proxy: ProxyPolicy {
                trusted: trusted.clone(),
                required: true,
            },
            gate: ConnectionGate::new(ConnectionLimits {
                max_connections,
                max_per_ip,
            }),
            tls: Some(tls.clone()),
            implicit_tls,
        };
        println!("{name} listening on {}", listener.local_addr()?);
        running.gates.push(settings.gate.clone());
        running
            .listeners
            .push(tokio::spawn(postbay_smtp::server::serve(
                listener,
                ctx.clone(),
                settings,
                role,
            )));
    }
    Ok(())
}

async fn start_mailbox(config: &Config, store: Store, running: &mut Running) -> Result<()> {
    let listen = config.lmtp.listen.expect("caller sets the LMTP address");
    let every = config.store.orphan_sweep_interval;
    if !every.is_zero() {
        tokio::spawn(postbay_store::sweep_orphans_every(
            store.clone(),
            every,
            config.store.orphan_grace,
        ));
    }
    let ctx = Arc::new(postbay_smtp::lmtp::session::LmtpContext {
        hostname: config.hostname.clone(),
        store,
        max_message_size: config.smtp.max_message_size + 64 * 1024,
        timeout: config.lmtp.timeout,
        max_recipients: 1000,
    });
    let listener = postbay_net::listener::bind(listen)
        .await
        .with_context(|| format!("binding LMTP on {listen}"))?;
    let gate = ConnectionGate::new(ConnectionLimits {
        max_connections: config.lmtp.max_connections,
        max_per_ip: config.lmtp.max_connections,
    });
    println!("lmtp listening on {}", listener.local_addr()?);
    running.gates.push(gate.clone());
    running
        .listeners
        .push(tokio::spawn(postbay_smtp::lmtp::serve_lmtp(
            listener, ctx, gate,
        )));
    Ok(())
}

/// Mail access for users: POP3 (and IMAP), each on a STARTTLS port and an implicit-TLS port.
async fn start_access(
    config: &Config,
    store: Store,
    tls: TlsProvider,
    authenticator: &postbay_auth::Authenticator,
    running: &mut Running,
) -> Result<()> {
    let limits = postbay_imap::ImapLimits {
        allow_plaintext_auth: config.imap.allow_plaintext_auth,
        max_compressed_sessions: config.imap.max_compressed_sessions,
        ..Default::default()
    };
    let mut imap = postbay_imap::ImapContext::with_authenticator(
        store.clone(),
        config.hostname.clone(),
        limits,
        authenticator.for_protocol("imap"),
    );
    if let Some(url) = config.imap.learn_url.as_deref().filter(|u| !u.is_empty()) {
        imap = imap.with_learner(postbay_imap::learn::Learner::new(url)?);
        tracing::info!(url, "Junk moves are taught to the filter");
    }
    let imap = Arc::new(imap);
    let section = &config.imap.access;
    let gate = ConnectionGate::new(ConnectionLimits {
        max_connections: section.max_connections,
        max_per_ip: section.max_connections_per_ip,
    });
    let proxy = ProxyPolicy {
        trusted: section.proxy_trusted.clone(),
        required: true,
    };
    for (addr, implicit_tls, name) in [
        (section.listen, false, "imap"),
        (section.listen_tls, true, "imaps"),
    ] {
        let Some(addr) = addr else { continue };
        let listener = postbay_net::listener::bind(addr)
            .await
            .with_context(|| format!("binding {name} on {addr}"))?;
        println!("{name} listening on {}", listener.local_addr()?);
        let settings = postbay_imap::ListenerSettings {
            proxy: proxy.clone(),
            gate: gate.clone(),
            tls: Some(tls.clone()),
            implicit_tls,
        };
        running.listeners.push(tokio::spawn(postbay_imap::serve(
            listener,
            imap.clone(),
            settings,
        )));
    }
    running.gates.push(gate);

    let pop3 = Arc::new(postbay_pop3::Pop3Context::with_authenticator(
        store,
        config.hostname.clone(),
        postbay_pop3::Pop3Limits::default(),
        authenticator.for_protocol("pop3"),
    ));
    let section = &config.pop3;
    let gate = ConnectionGate::new(ConnectionLimits {
        max_connections: section.max_connections,
        max_per_ip: section.max_connections_per_ip,
    });
    let proxy = ProxyPolicy {
        trusted: section.proxy_trusted.clone(),
        required: true,
    };
    for (addr, implicit_tls, name) in [
        (section.listen, false, "pop3"),
        (section.listen_tls, true, "pop3s"),
    ] {
        let Some(addr) = addr else { continue };
        let listener = postbay_net::listener::bind(addr)
            .await
            .with_context(|| format!("binding {name} on {addr}"))?;
        println!("{name} listening on {}", listener.local_addr()?);
        let settings = postbay_pop3::ListenerSettings {
            proxy: proxy.clone(),
            gate: gate.clone(),
            tls: Some(tls.clone()),
            implicit_tls,
        };
        running.listeners.push(tokio::spawn(postbay_pop3::serve(
            listener,
            pop3.clone(),
            settings,
        )));
    }
    running.gates.push(gate);
    Ok(())
}

/// Hides a password in a database URL before it is printed.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// What a role started, so SIGTERM can stop it gracefully.
struct Running {
    listeners: Vec<tokio::task::JoinHandle<()>>,
    gates: Vec<ConnectionGate>,
    health: postbay_telemetry::admin::Health,
    /// Run after the drain (state kept in memory that belongs on disk).
    at_stop: Vec<Box<dyn FnOnce() + Send>>,
}

/// How long open sessions may finish after SIGTERM; keep below the Pod's
/// terminationGracePeriodSeconds (30 s by default).
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(25);

impl Running {
    /// Starts the admin listener first (when `admin.listen` is set), so probes get answers
    /// (alive, not ready) while the role waits for its database.
    async fn start(config: &Config) -> Result<Running> {
        let health = postbay_telemetry::admin::Health::default();
        if let Some(at) = config.admin.listen {
            let listener = postbay_net::listener::bind(at)
                .await
                .with_context(|| format!("binding admin on {at}"))?;
            println!("admin listening on {}", listener.local_addr()?);
            tokio::spawn(postbay_telemetry::admin::serve(listener, health.clone()));
        }
        Ok(Running {
            listeners: Vec::new(),
            gates: Vec::new(),
            health,
            at_stop: Vec::new(),
        })
    }

    /// Waits for SIGTERM or Ctrl-C, stops accepting, and gives open sessions time to
    /// finish. Nothing acknowledged is at risk either way: queued mail is on disk.
    async fn shutdown(self) {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        self.health.set_draining();
        for listener in &self.listeners {
            listener.abort();
        }
        let open: usize = self.gates.iter().map(ConnectionGate::active).sum();
        tracing::info!(open, "stopping: no new connections, draining open sessions");
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        while tokio::time::Instant::now() < deadline && self.gates.iter().any(|g| g.active() > 0) {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        for stop in self.at_stop {
            stop();
        }
        tracing::info!("stopped");
    }
}

//! Configuration: built-in defaults, then an optional YAML file, then environment variables.
//!
//! Any setting can come from the environment as `POSTBAY_<SECTION>__<KEY>` (double
//! underscore between levels, e.g. `POSTBAY_SMTP__MAX_RECIPIENTS=50`), and top-level ones as
//! `POSTBAY_<KEY>` (`POSTBAY_DATABASE_URL`). Values are parsed as YAML scalars, so numbers,
//! booleans and lists (`[10.0.0.0/8, 192.168.0.0/16]`) work. This is what the Helm chart and
//! the manifests use; Secrets reach the process the same way (env from secretKeyRef).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Our host name: greeting, EHLO, Received headers, self-signed certificate.
    pub hostname: String,
    /// `sqlite://PATH?mode=rwc` or `mysql://USER:PASSWORD@HOST/DB`. Empty means SQLite in
    /// `data_dir`.
    pub database_url: String,
    /// The shared volume: mail blobs under `mail/`, queues under `spool/`, dev TLS under `tls/`.
    pub data_dir: PathBuf,
    /// Stable identity of this replica (a StatefulSet pod name); names its queue directory.
    pub node_id: String,
    pub tls: TlsConfig,
    pub smtp: SmtpSection,
    pub submission: SubmissionSection,
    pub dkim: DkimSection,
    pub lmtp: LmtpSection,
    pub pop3: AccessSection,
    pub imap: ImapSection,
    /// Logins of every protocol (IMAP, POP3, submission): one throttle, one hashing pool.
    pub auth: AuthSection,
    /// The admin listener (/metrics, /healthz, /readyz).
    pub admin: AdminSection,
    /// `text` (default) or `json`: one JSON object per line, span fields (session, remote,
    /// listener) included, for log collectors.
    pub log_format: LogFormat,
    /// The spam filter (`postbay filter`, Rspamd's HTTP protocol).
    pub filter: FilterSection,
    /// Delivery of mail for other domains (MX lookup, SMTP client, retries).
    pub outbound: OutboundSection,
    /// Upkeep of the message store on the shared volume.
    pub store: StoreSection,
    /// OpenTelemetry traces (off unless an endpoint is set here or in OTEL_* variables).
    pub tracing: TracingSection,
}

/// The periodic orphan-blob sweep of the roles that write blobs (`imap`, `dev`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// How often a replica tries to sweep (one at a time, under a lock); `0s` turns it off.
    #[serde(with = "humantime_serde")]
    pub orphan_sweep_interval: Duration,
    /// Blobs younger than this are never removed: a delivery may still be committing them.
    #[serde(with = "humantime_serde")]
    pub orphan_grace: Duration,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            orphan_sweep_interval: Duration::from_secs(3600),
            orphan_grace: Duration::from_secs(3600),
        }
    }
}

/// Where spans go. Empty fields fall back to the standard variables
/// (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_TRACES_SAMPLER_ARG`, `OTEL_SERVICE_NAME`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracingSection {
    /// OTLP/HTTP collector base URL, e.g. `http://otel-collector:4318`; traces are off
    /// when neither this nor `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
    pub otlp_endpoint: Option<String>,
    /// Fraction of new traces recorded (parent-based: a message whose trace was sampled
    /// upstream stays sampled); default 1.0.
    pub sample_ratio: Option<f64>,
    /// `service.name` of this process's spans; default `postbay-<role>`.
    pub service_name: Option<String>,
}

/// `postbay filter`: listener, limits, thresholds and scores.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilterSection {
    /// Rspamd's normal worker port is 11333.
    pub listen: Option<SocketAddr>,
    /// The milter listener for Postfix's `smtpd_milters` (Rspamd's proxy worker port is
    /// 11332): `ip:port`, or `off`. Unset: `postbay filter` opens none, `postbay dev` its
    /// port base + 11332.
    pub milter_listen: Option<String>,
    /// Silence allowed between two milter commands (an SMTP session may pause as long as the
    /// MTA's own timeouts allow: Postfix's smtpd_timeout is 300 s).
    #[serde(with = "humantime_serde")]
    pub milter_idle_timeout: Duration,
    pub max_message_size: usize,
    pub max_headers: usize,
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    pub max_connections: usize,
    /// Score from which the action is "add header" (X-Spam: Yes, Junk folder).
    pub add_header: f64,
    /// Score from which the action is "reject" (550 5.7.1).
    pub reject: f64,
    /// Score from which the action is "greylist"; unset: never.
    pub greylist: Option<f64>,
    /// Score from which the action is "rewrite subject"; unset: never.
    pub rewrite_subject: Option<f64>,
    /// The new Subject of a "rewrite subject" verdict; `%s` is the old one.
    pub subject: String,
    /// Our authserv-id in Authentication-Results (RFC 8601); default: `hostname`.
    pub authserv_id: Option<String>,
    /// Symbol name → score, replacing the built-in one (docs/filter.md lists them).
    pub scores: std::collections::BTreeMap<String, f64>,
    /// Messages of each class learnt before the classifier reports BAYES_SPAM / BAYES_HAM.
    pub bayes_min_learns: u64,
    /// One classifier per recipient domain (learnt through Deliver-To/Rcpt, IMAP Junk moves
    /// name the mailbox) instead of one for all.
    pub bayes_per_domain: bool,
    /// DNS servers (`ip:port`) for SPF, DKIM, DMARC and ARC; empty: /etc/resolv.conf's.
    pub nameservers: Vec<SocketAddr>,
    /// Time for one message's authentication lookups, all together.
    #[serde(with = "humantime_serde")]
    pub dns_timeout: Duration,
    /// Clients whose mail is not SPF/DKIM/DMARC-checked (our own relays, Rspamd's
    /// `local_addrs`).
    pub local_networks: Vec<ipnet::IpNet>,
    /// DNS blocklists for the client address, as Postfix's postscreen_dnsbl_sites:
    /// `zone[=pattern][*weight]`, e.g. `zen.spamhaus.org=127.0.0.[2..11]*3`. Empty: none.
    pub dnsbl_sites: Vec<String>,
    /// Domain blocklists (RFC 5782 §3) for the envelope sender's, From's and the links'
    /// domains, the same syntax (e.g. `dbl.spamhaus.org=127.0.1.[2..99]*4`).
    pub domain_dnsbl_sites: Vec<String>,
    /// Greylisting of unauthenticated clients (triplets in the database); off by default.
    pub greylisting: bool,
    /// How long a new triplet must wait, and how long a passed one is remembered after it was
    /// last seen (Postgrey's 5 minutes and 35 days).
    #[serde(with = "humantime_serde")]
    pub greylist_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub greylist_lifetime: Duration,
    /// Rate limits, Rspamd's ratelimit module simply: `kind:N/period` with kind `ip` (the
    /// client, IPv6 by /64), `from` (envelope sender), `rcpt` (each recipient) or `user`
    /// (the login), e.g. `[ip:200/1h, from:100/1h, user:1000/1d]`; counters in the
    /// database. Empty (default): off.
    pub ratelimits: Vec<String>,
}

/// Where a role opens the milter listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MilterListen {
    Default,
    Off,
    At(SocketAddr),
}

impl FilterSection {
    pub fn milter_listen(&self) -> anyhow::Result<MilterListen> {
        match self.milter_listen.as_deref().map(str::trim) {
            None | Some("") => Ok(MilterListen::Default),
            Some("off") => Ok(MilterListen::Off),
            Some(at) => at.parse().map(MilterListen::At).map_err(|_| {
                anyhow::anyhow!("filter.milter_listen must be ip:port or off, not {at}")
            }),
        }
    }
}

impl Default for FilterSection {
    fn default() -> Self {
        let limits = postbay_filter::Limits::default();
        let thresholds = postbay_filter::Thresholds::default();
        FilterSection {
            listen: None,
            milter_listen: None,
            milter_idle_timeout: Duration::from_secs(600),
            max_message_size: limits.max_message_size,
            max_headers: limits.max_headers,
            header_timeout: limits.header_timeout,
            request_timeout: limits.request_timeout,
            max_connections: limits.max_connections,
            add_header: thresholds.add_header,
            reject: thresholds.reject,
            greylist: thresholds.greylist,
            rewrite_subject: thresholds.rewrite_subject,
            subject: thresholds.subject,
            authserv_id: None,
            scores: Default::default(),
            bayes_min_learns: postbay_filter::bayes::BayesSettings::default().min_learns,
            bayes_per_domain: false,
            nameservers: Vec::new(),
            dns_timeout: Duration::from_secs(5),
            local_networks: vec![
                ipnet::IpNet::V4(ipnet::Ipv4Net::new_assert(std::net::Ipv4Addr::LOCALHOST, 8)),
                ipnet::IpNet::V6(ipnet::Ipv6Net::new_assert(
                    std::net::Ipv6Addr::LOCALHOST,
                    128,
                )),
            ],
            dnsbl_sites: Vec::new(),
            domain_dnsbl_sites: Vec::new(),
            greylisting: false,
            greylist_delay: Duration::from_secs(300),
            greylist_lifetime: Duration::from_secs(35 * 86_400),
            ratelimits: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Operations: where the admin listener is (off unless set; `postbay dev`: port base + 8080).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSection {
    pub listen: Option<SocketAddr>,
}

/// The process's one login policy (postbay-auth). Defaults: `postbay_auth::AuthConfig`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// Delay of the answer to a first recent failed login; doubles per further failure of
    /// the client's network or the user name.
    #[serde(with = "humantime_serde")]
    pub failure_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub max_failure_delay: Duration,
    /// Failures from one network (IPv4 address, IPv6 /64) before it is locked out.
    pub max_failures_per_network: u32,
    /// Failures for one user name before it is locked out.
    pub max_failures_per_user: u32,
    /// Counts start over, and lockouts end, after this long without a failure.
    #[serde(with = "humantime_serde")]
    pub failure_window: Duration,
    /// Networks and user names tracked at most (each).
    pub max_tracked: usize,
    /// Password hashes computed at once; 0 = the number of cores, at most 4.
    pub hashing_threads: usize,
    /// How long the hashing threads keep their Argon2 memory (64 MiB each) after the last
    /// check; reusing it saves a third of a check's CPU.
    #[serde(with = "humantime_serde")]
    pub hash_memory_idle: Duration,
    /// Successful logins remembered (HMAC keys only, never passwords); 0 = no cache.
    pub cache_capacity: usize,
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// Secret for SCRAM replies to unknown users; give every replica the same one (from a
    /// Secret). Unset: random per process, which lets a prober compare replicas.
    pub scram_unknown_user_secret: Option<String>,
}

impl Default for AuthSection {
    fn default() -> Self {
        let base = postbay_auth::AuthConfig::default();
        AuthSection {
            failure_delay: base.policy.failure_delay,
            max_failure_delay: base.policy.max_failure_delay,
            max_failures_per_network: base.policy.max_failures_per_network,
            max_failures_per_user: base.policy.max_failures_per_user,
            failure_window: base.policy.failure_window,
            max_tracked: base.policy.max_tracked,
            hashing_threads: 0,
            hash_memory_idle: base.hash_memory_idle,
            cache_capacity: base.cache_capacity,
            cache_ttl: base.cache_ttl,
            scram_unknown_user_secret: None,
        }
    }
}

impl AuthSection {
    pub fn auth_config(&self) -> postbay_auth::AuthConfig {
        let base = postbay_auth::AuthConfig::default();
        postbay_auth::AuthConfig {
            policy: postbay_auth::LoginPolicy {
                failure_delay: self.failure_delay,
                max_failure_delay: self.max_failure_delay,
                max_failures_per_network: self.max_failures_per_network,
                max_failures_per_user: self.max_failures_per_user,
                failure_window: self.failure_window,
                max_tracked: self.max_tracked,
            },
            hashing_threads: match self.hashing_threads {
                0 => base.hashing_threads,
                n => n,
            },
            hash_memory_idle: self.hash_memory_idle,
            cache_capacity: self.cache_capacity,
            cache_ttl: self.cache_ttl,
            scram_unknown_user_secret: self
                .scram_unknown_user_secret
                .as_ref()
                .map(|s| s.as_bytes().to_vec()),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImapSection {
    #[serde(flatten)]
    pub access: AccessSection,
    /// Accept LOGIN/AUTHENTICATE PLAIN without TLS. Off in production (clients get
    /// LOGINDISABLED until STARTTLS); `postbay dev` turns it on, its listeners are loopback.
    pub allow_plaintext_auth: bool,
    /// The filter to teach from Junk moves (`http://host:port`, Rspamd's /learnspam and
    /// /learnham): into `\Junk` is spam, out of it (not to `\Trash`) ham. Unset: not taught.
    pub learn_url: Option<String>,
    /// COMPRESS=DEFLATE sessions at once per process; further ones get `NO [LIMIT]` and
    /// stay uncompressed (decision 80). 0: COMPRESS always refused.
    pub max_compressed_sessions: usize,
}

impl Default for ImapSection {
    fn default() -> Self {
        ImapSection {
            access: AccessSection::default(),
            allow_plaintext_auth: false,
            learn_url: None,
            max_compressed_sessions: postbay_imap::config::DEFAULT_MAX_COMPRESSED_SESSIONS,
        }
    }
}

/// A mail-access listener pair (POP3: 110 + 995; IMAP: 143 + 993).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessSection {
    /// Plain port with STLS/STARTTLS.
    pub listen: Option<SocketAddr>,
    /// Implicit-TLS port.
    pub listen_tls: Option<SocketAddr>,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Load balancers allowed to send a PROXY protocol header (required from them).
    pub proxy_trusted: Vec<ipnet::IpNet>,
}

impl Default for AccessSection {
    fn default() -> Self {
        AccessSection {
            listen: None,
            listen_tls: None,
            max_connections: 5000,
            max_connections_per_ip: 50,
            proxy_trusted: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, or a directory holding `tls.crt` and `tls.key` (a mounted
    /// kubernetes.io/tls Secret). Unset: a self-signed certificate is generated.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpSection {
    /// The MX listener (port 25).
    pub listen: Option<SocketAddr>,
    /// Where the queue delivers: the mailbox component's LMTP listener, `host:port` (a
    /// Service name in Kubernetes, resolved per connection).
    pub lmtp_target: Option<String>,
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub max_errors: usize,
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub data_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Load balancer addresses allowed to send a PROXY protocol header (v1 or v2); from
    /// them a header is required, from anyone else it is never read.
    pub proxy_trusted: Vec<ipnet::IpNet>,
    /// Deliveries the queue runs at once.
    pub queue_concurrency: usize,
    /// Tell the sender once when a message is still undelivered after this long (a DSN with
    /// Action: delayed, to recipients without NOTIFY or with NOTIFY=DELAY), as Postfix's
    /// delay_warning_time; `0s` (the default, as Postfix's): never.
    #[serde(with = "humantime_serde")]
    pub delay_warning_time: Duration,
    /// How often the queue directory is scanned for due retries and admin requests
    /// (`postbay queue retry|delete|bounce`).
    #[serde(with = "humantime_serde")]
    pub queue_scan_interval: Duration,
    /// How often a replica takes in the queues of replicas that are gone (scaled down);
    /// `0s` turns it off.
    #[serde(with = "humantime_serde")]
    pub queue_adopt_interval: Duration,
    /// The spam filter MX mail is scanned by before its 250: `http://host:port` of a
    /// `postbay filter` or a real Rspamd. Unset: no filtering (`postbay dev`: its own).
    pub filter: Option<String>,
    #[serde(with = "humantime_serde")]
    pub filter_timeout: Duration,
    /// `open`: accept unfiltered when the filter fails (logged, counted); `closed`: 451.
    pub filter_failure: FilterFailure,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterFailure {
    #[default]
    Open,
    Closed,
}

/// Mail submission for logged-in users (RFC 6409 on 587 with STARTTLS, RFC 8314 on 465),
/// served by `postbay smtp` next to the MX and sharing its queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubmissionSection {
    /// Port 587 (STARTTLS, then AUTH).
    pub listen: Option<SocketAddr>,
    /// Port 465 (implicit TLS).
    pub listen_tls: Option<SocketAddr>,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub proxy_trusted: Vec<ipnet::IpNet>,
    /// Per-user defaults; a Mailbox's `spec.sendingLimits` overrides them. 0 = no limit.
    pub max_messages_per_hour: u32,
    pub max_recipients_per_hour: u32,
    /// Also offer AUTH on the MX port (after STARTTLS), for sites whose clients submit on 25.
    pub auth_on_mx: bool,
}

impl Default for SubmissionSection {
    fn default() -> Self {
        let limits = postbay_smtp::SmtpConfig::default().send_limits;
        SubmissionSection {
            listen: None,
            listen_tls: None,
            max_connections: 1000,
            max_connections_per_ip: 20,
            proxy_trusted: Vec::new(),
            max_messages_per_hour: limits.messages_per_hour,
            max_recipients_per_hour: limits.recipients_per_hour,
            auth_on_mx: false,
        }
    }
}

/// DKIM signing of submitted mail.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DkimSection {
    /// Where the operator's key Secret is mounted (`<domain>.<selector>.key` files). Unset:
    /// keys are read from the `file:` paths in the directory (what `postbay apply` writes).
    pub keys_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LmtpSection {
    pub listen: Option<SocketAddr>,
    pub max_connections: usize,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hostname: "localhost".into(),
            database_url: String::new(),
            data_dir: PathBuf::from("./postbay-data"),
            node_id: "node-0".into(),
            tls: TlsConfig::default(),
            smtp: SmtpSection::default(),
            submission: SubmissionSection::default(),
            dkim: DkimSection::default(),
            lmtp: LmtpSection::default(),
            pop3: AccessSection::default(),
            imap: ImapSection::default(),
            auth: AuthSection::default(),
            admin: AdminSection::default(),
            log_format: LogFormat::default(),
            filter: FilterSection::default(),
            outbound: OutboundSection::default(),
            store: StoreSection::default(),
            tracing: TracingSection::default(),
        }
    }
}

impl Default for SmtpSection {
    fn default() -> Self {
        let base = postbay_smtp::SmtpConfig::default();
        SmtpSection {
            listen: None,
            lmtp_target: None,
            max_message_size: base.max_message_size,
            max_recipients: base.max_recipients,
            max_errors: base.max_errors,
            command_timeout: base.command_timeout,
            data_timeout: base.data_timeout,
            max_connections: 1000,
            max_connections_per_ip: 50,
            proxy_trusted: Vec::new(),
            queue_concurrency: 32,
            delay_warning_time: Duration::ZERO,
            queue_scan_interval: Duration::from_secs(5),
            queue_adopt_interval: Duration::from_secs(60),
            filter: None,
            filter_timeout: Duration::from_secs(20),
            filter_failure: FilterFailure::Open,
        }
    }
}

impl Default for LmtpSection {
    fn default() -> Self {
        LmtpSection {
            listen: None,
            max_connections: 500,
            timeout: Duration::from_secs(300),
        }
    }
}

impl Config {
    /// Defaults, then `file` (if any), then `POSTBAY_*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Config> {
        let mut value = serde_yaml::to_value(Config::default())?;
        if let Some(file) = file {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading config file {}", file.display()))?;
            let from_file: serde_yaml::Value = serde_yaml::from_str(&text)
                .with_context(|| format!("parsing config file {}", file.display()))?;
            merge(&mut value, from_file);
        }
        // Only variables naming a setting count: others with the prefix (POSTBAY_LOG, test
        // knobs, and the POSTBAY_SERVICE_HOST/POSTBAY_PORT that Kubernetes injects for a
        // Service named `postbay`) are not configuration and must not break start-up.
        let settings: Vec<String> = value
            .as_mapping()
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        for (key, raw) in std::env::vars() {
            let Some(path) = key.strip_prefix("POSTBAY_") else {
                continue;
            };
            let first = path.split("__").next().unwrap_or("").to_lowercase();
            if !settings.contains(&first) {
                continue;
            }
            let parsed: serde_yaml::Value =
                serde_yaml::from_str(&raw).unwrap_or(serde_yaml::Value::String(raw.clone()));
            set_path(
                &mut value,
                &path.to_lowercase().split("__").collect::<Vec<_>>(),
                parsed,
            );
        }
        let config: Config = serde_yaml::from_value(value)
            .context("invalid configuration (file or POSTBAY_* environment)")?;
        if let Some(url) = &config.smtp.filter {
            if postbay_smtp::inbound::filter::FilterSettings::from_url(
                url,
                Duration::ZERO,
                postbay_smtp::inbound::filter::FailureMode::Open,
            )
            .is_none()
            {
                anyhow::bail!("smtp.filter must be http://host:port[/path], not {url}");
            }
        }
        Ok(config)
    }

    pub fn database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("postbay.db").display()
            )
        } else {
            self.database_url.clone()
        }
    }

    pub fn mail_root(&self) -> PathBuf {
        self.data_dir.join("mail")
    }

    pub fn spool(&self) -> PathBuf {
        self.data_dir.join("spool")
    }

    pub fn filter_settings(&self) -> anyhow::Result<postbay_filter::FilterSettings> {
        use postbay_filter::checks::dnsbl::Site;
        let f = &self.filter;
        let sites = |specs: &[String], prefix: &str| -> anyhow::Result<Vec<Site>> {
            specs
                .iter()
                .map(|s| Site::parse(s, prefix).map_err(|e| anyhow::anyhow!("filter: {e}")))
                .collect()
        };
        Ok(postbay_filter::FilterSettings {
            dnsbl_sites: sites(&f.dnsbl_sites, "RBL")?,
            domain_dnsbl_sites: sites(&f.domain_dnsbl_sites, "URIBL")?,
            greylist: f
                .greylisting
                .then(|| postbay_filter::checks::greylist::GreylistSettings {
                    delay: f.greylist_delay,
                    lifetime: f.greylist_lifetime,
                    local: f.local_networks.clone(),
                }),
            ratelimit: if f.ratelimits.is_empty() {
                None
            } else {
                Some(postbay_filter::checks::ratelimit::RatelimitSettings {
                    rules: f
                        .ratelimits
                        .iter()
                        .map(|r| {
                            postbay_filter::checks::ratelimit::Rule::parse(r)
                                .map_err(|e| anyhow::anyhow!("filter.ratelimits: {e}"))
                        })
                        .collect::<anyhow::Result<_>>()?,
                    local: f.local_networks.clone(),
                })
            },
            limits: postbay_filter::Limits {
                max_message_size: f.max_message_size,
                max_headers: f.max_headers,
                header_timeout: f.header_timeout,
                request_timeout: f.request_timeout,
                max_connections: f.max_connections,
            },
            thresholds: postbay_filter::Thresholds {
                add_header: f.add_header,
                reject: f.reject,
                greylist: f.greylist,
                rewrite_subject: f.rewrite_subject,
                subject: f.subject.clone(),
            },
            scores: f.scores.clone(),
            authserv_id: f
                .authserv_id
                .clone()
                .unwrap_or_else(|| self.hostname.clone()),
            bayes: postbay_filter::bayes::BayesSettings {
                min_learns: f.bayes_min_learns,
                per_domain: f.bayes_per_domain,
                ..Default::default()
            },
            nameservers: f.nameservers.clone(),
            dns_timeout: f.dns_timeout,
            local_networks: f.local_networks.clone(),
        })
    }

    pub fn smtp_config(&self) -> postbay_smtp::SmtpConfig {
        postbay_smtp::SmtpConfig {
            hostname: self.hostname.clone(),
            max_message_size: self.smtp.max_message_size,
            max_recipients: self.smtp.max_recipients,
            max_errors: self.smtp.max_errors,
            command_timeout: self.smtp.command_timeout,
            data_timeout: self.smtp.data_timeout,
            send_limits: postbay_smtp::inbound::rate::SendLimits {
                messages_per_hour: self.submission.max_messages_per_hour,
                recipients_per_hour: self.submission.max_recipients_per_hour,
            },
            filter: self.smtp.filter.as_deref().map(|url| {
                use postbay_smtp::inbound::filter::{FailureMode, FilterSettings};
                let failure = match self.smtp.filter_failure {
                    FilterFailure::Open => FailureMode::Open,
                    FilterFailure::Closed => FailureMode::Closed,
                };
                FilterSettings::from_url(url, self.smtp.filter_timeout, failure)
                    .expect("checked by Config::load")
            }),
            // Read from its file by the role that serves SMTP (`Config::srs`).
            srs: None,
        }
    }
}

fn merge(base: &mut serde_yaml::Value, overlay: serde_yaml::Value) {
    match (base, overlay) {
        (serde_yaml::Value::Mapping(b), serde_yaml::Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

fn set_path(value: &mut serde_yaml::Value, path: &[&str], new: serde_yaml::Value) {
    let Some((first, rest)) = path.split_first() else {
        *value = new;
        return;
    };
    if !value.is_mapping() {
        *value = serde_yaml::Value::Mapping(Default::default());
    }
    let map = value.as_mapping_mut().expect("just made a mapping");
    let key = serde_yaml::Value::String(first.to_string());
    let entry = map.entry(key).or_insert(serde_yaml::Value::Null);
    set_path(entry, rest, new);
}

/// The process's one login module, shared by every protocol it serves.
/// One throttle, one hashing pool and one cache, whatever the protocol (`dev` serves all).
pub fn authenticator(config: &Config, store: &postbay_store::Store) -> postbay_auth::Authenticator {
    postbay_auth::Authenticator::new(store.clone(), config.auth.auth_config())
}

// ---- outbound delivery (`outbound.*`, `POSTBAY_OUTBOUND__*`) --------------------------------

/// Delivery to other domains' servers. Defaults: `postbay_smtp::outbound::OutboundSettings`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundSection {
    /// Deliver mail for remote domains. Unset: on for `postbay smtp`, off for `postbay dev`
    /// (a laptop must not send test mail to the internet; remote mail waits in the queue).
    pub enabled: Option<bool>,
    /// Name in EHLO. Unset: the top-level `hostname`.
    pub hostname: Option<String>,
    /// Port of the MX hosts (25; tests point it at peers on 127.0.0.0/8).
    pub mx_port: u16,
    /// DNS servers (`ip:port`) for MX/A/AAAA lookups. Empty: the system resolver
    /// (/etc/resolv.conf).
    pub nameservers: Vec<SocketAddr>,
    /// Give up on a recipient (bounce, 4.4.7) once its message is this old.
    #[serde(with = "humantime_serde")]
    pub lifetime: Duration,
    /// First retry after a temporary failure; each later one waits twice as long, up to
    /// `max_backoff` (Postfix's minimal/maximal_backoff_time).
    #[serde(with = "humantime_serde")]
    pub min_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// TCP connect timeout per MX address.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Deliveries to one domain at once (Postfix's default_destination_concurrency_limit).
    pub max_per_domain: usize,
    /// A smarthost for every remote message, Postfix's syntax: `[host]:port` (its
    /// addresses) or `host:port` (its MX hosts). Unset: each domain's MX hosts.
    pub relayhost: Option<String>,
    /// TLS to the relayhost: `starttls` (required, certificate verified), `implicit` (TLS
    /// from the first byte, RFC 8314) or `opportunistic`. Unset: `implicit` on port 465,
    /// else `starttls`.
    pub relayhost_tls: Option<RelayTls>,
    /// Login at the relayhost (AUTH PLAIN or LOGIN, only over TLS).
    pub relayhost_user: Option<String>,
    /// File holding the password (a mounted Secret key), read at every connection.
    pub relayhost_password_file: Option<PathBuf>,
    /// PEM trust roots added to the system's for the relayhost's certificate.
    pub relayhost_ca_file: Option<PathBuf>,
    /// Only these domains go through the relayhost (`example.net`, or `.example.net` for its
    /// subdomains); empty: every remote domain.
    pub relayhost_domains: Vec<String>,
    /// Fixed next hops by domain (Postfix's transport_maps), before the relayhost:
    /// `example.net: "[10.0.0.5]:25"` or `{nexthop: "[smtp.partner]:587", tls: starttls,
    /// ca_file: ...}`. TLS defaults to opportunistic, as for an MX.
    pub transports: std::collections::BTreeMap<String, TransportSpec>,
    /// How long a session is kept after a delivery for the next message to the same place
    /// (Postfix's smtp_connection_cache_time_limit); 0s turns connection reuse off.
    #[serde(with = "humantime_serde")]
    pub connection_cache_time: Duration,
    /// No reuse of a session older than this (smtp_connection_reuse_time_limit).
    #[serde(with = "humantime_serde")]
    pub connection_reuse_time: Duration,
    /// Transactions per session at most; 0 = no limit (smtp_connection_reuse_count_limit).
    pub connection_reuse_count: u32,
    /// A file holding the SRS secret (a mounted Secret key; the same on every replica, at
    /// least 16 bytes). Set: mail an alias forwards to another domain leaves with an SRS
    /// reverse path, and bounces to it go back to the sender. Unset: SRS off.
    pub srs_secret_file: Option<PathBuf>,
    /// The domain of SRS addresses (its MX must be us). Unset: the top-level `hostname`.
    pub srs_domain: Option<String>,
    /// MTA-STS (RFC 8461): fetch and cache recipient domains' policies and hold their MX
    /// hosts to them. Policies are cached in `<data>/mta-sts`.
    pub mta_sts: bool,
    /// HTTPS port of `mta-sts.<domain>` (443; tests use another).
    pub mta_sts_port: u16,
    /// DANE (RFC 7672): enforce the TLSA records of DNSSEC-validated MX hosts. Takes effect
    /// only when the resolver validates (checked at start-up with `dnssec_probe`).
    pub dane: bool,
    /// A DNSSEC-signed name whose answer must carry the AD bit for DANE to be on (the root).
    pub dnssec_probe: String,
    /// Timeout of one DNSSEC-status or TLSA query, shorter than the MX lookup's.
    #[serde(with = "humantime_serde")]
    pub dane_timeout: Duration,
}

/// One `outbound.transports` entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum TransportSpec {
    /// `[host]:port` or `host:port` (an optional `smtp:` prefix, as in Postfix, is taken off).
    Nexthop(String),
    Full {
        nexthop: String,
        #[serde(default)]
        tls: Option<RelayTls>,
        #[serde(default)]
        ca_file: Option<PathBuf>,
    },
}

/// `outbound.relayhost_tls`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RelayTls {
    Starttls,
    Implicit,
    Opportunistic,
}

impl RelayTls {
    pub fn mode(self) -> postbay_smtp::outbound::client::TlsMode {
        use postbay_smtp::outbound::client::TlsMode;
        match self {
            RelayTls::Starttls => TlsMode::RequireStartTls,
            RelayTls::Implicit => TlsMode::Implicit,
            RelayTls::Opportunistic => TlsMode::Opportunistic,
        }
    }
}

impl Default for OutboundSection {
    fn default() -> Self {
        let base = postbay_smtp::outbound::OutboundSettings::default();
        OutboundSection {
            enabled: None,
            hostname: None,
            mx_port: base.mx_port,
            nameservers: Vec::new(),
            lifetime: base.backoff.lifetime,
            min_backoff: base.backoff.min,
            max_backoff: base.backoff.max,
            connect_timeout: base.timeouts.connect,
            max_per_domain: 20,
            relayhost: None,
            relayhost_tls: None,
            relayhost_user: None,
            relayhost_password_file: None,
            relayhost_ca_file: None,
            relayhost_domains: Vec::new(),
            transports: Default::default(),
            connection_cache_time: base.pool.idle,
            connection_reuse_time: base.pool.max_age,
            connection_reuse_count: base.pool.max_uses,
            srs_secret_file: None,
            srs_domain: None,
            mta_sts: true,
            mta_sts_port: 443,
            dane: base.dane,
            dnssec_probe: base.dnssec_probe,
            dane_timeout: base.dane_timeout,
        }
    }
}

impl Config {
    /// Whether this role delivers remote mail; `role_default` is the role's choice when
    /// `outbound.enabled` is unset.
    pub fn outbound_enabled(&self, role_default: bool) -> bool {
        self.outbound.enabled.unwrap_or(role_default)
    }

    pub fn outbound_settings(&self) -> anyhow::Result<postbay_smtp::outbound::OutboundSettings> {
        use postbay_smtp::outbound::client::TlsMode;
        let base = postbay_smtp::outbound::OutboundSettings::default();
        let out = &self.outbound;
        let relay = match out.relayhost.as_deref().filter(|r| !r.trim().is_empty()) {
            Some(spec) => {
                let (host, port, mx_lookup) = postbay_smtp::outbound::Relay::parse_target(spec)
                    .map_err(|e| anyhow::anyhow!("outbound.{e}"))?;
                let tls = match out.relayhost_tls {
                    Some(tls) => tls.mode(),
                    None if port == 465 => TlsMode::Implicit,
                    None => TlsMode::RequireStartTls,
                };
                if out.relayhost_user.is_some() != out.relayhost_password_file.is_some() {
                    anyhow::bail!(
                        "outbound.relayhost_user and outbound.relayhost_password_file go together"
                    );
                }
                Some(postbay_smtp::outbound::Relay {
                    host,
                    port,
                    mx_lookup,
                    tls,
                    user: out.relayhost_user.clone(),
                    password_file: out.relayhost_password_file.clone(),
                    ca_file: out.relayhost_ca_file.clone(),
                })
            }
            None => None,
        };
        Ok(postbay_smtp::outbound::OutboundSettings {
            hostname: self
                .outbound
                .hostname
                .clone()
                .unwrap_or_else(|| self.hostname.clone()),
            mx_port: self.outbound.mx_port,
            nameservers: self.outbound.nameservers.clone(),
            backoff: postbay_smtp::outbound::backoff::Backoff {
                min: self.outbound.min_backoff,
                max: self.outbound.max_backoff,
                lifetime: self.outbound.lifetime,
            },
            timeouts: postbay_smtp::outbound::client::Timeouts {
                connect: self.outbound.connect_timeout,
                ..base.timeouts
            },
            relay,
            relay_domains: out.relayhost_domains.clone(),
            transports: out
                .transports
                .iter()
                .map(|(domain, spec)| transport(domain, spec))
                .collect::<anyhow::Result<_>>()?,
            pool: postbay_smtp::outbound::pool::PoolSettings {
                idle: out.connection_cache_time,
                max_age: out.connection_reuse_time,
                max_uses: out.connection_reuse_count,
                per_destination: out.max_per_domain,
            },
            sts: out
                .mta_sts
                .then(|| postbay_smtp::outbound::mta_sts::StsSettings {
                    port: out.mta_sts_port,
                    cache_dir: Some(self.spool().join("mta-sts")),
                    ..Default::default()
                }),
            dane: out.dane,
            dnssec_probe: out.dnssec_probe.clone(),
            dane_timeout: out.dane_timeout,
            tlsrpt_dir: Some(self.spool().join("tls-rpt")),
            node: self.node_id.clone(),
        })
    }
}

impl Config {
    /// SRS from `outbound.srs_secret_file`, if set.
    pub fn srs(&self) -> anyhow::Result<Option<postbay_smtp::outbound::srs::Srs>> {
        let Some(file) = &self.outbound.srs_secret_file else {
            return Ok(None);
        };
        let secret = std::fs::read(file)
            .map_err(|e| anyhow::anyhow!("outbound.srs_secret_file {}: {e}", file.display()))?;
        let secret = secret.trim_ascii();
        if secret.len() < 16 {
            anyhow::bail!(
                "outbound.srs_secret_file {}: the secret must be at least 16 bytes",
                file.display()
            );
        }
        let domain = self
            .outbound
            .srs_domain
            .as_deref()
            .unwrap_or(&self.hostname);
        Ok(Some(postbay_smtp::outbound::srs::Srs::new(secret, domain)))
    }
}

/// An `outbound.transports` entry as a next hop.
fn transport(
    domain: &str,
    spec: &TransportSpec,
) -> anyhow::Result<(String, postbay_smtp::outbound::Relay)> {
    use postbay_smtp::outbound::client::TlsMode;
    let (nexthop, tls, ca_file) = match spec {
        TransportSpec::Nexthop(n) => (n.as_str(), None, None),
        TransportSpec::Full {
            nexthop,
            tls,
            ca_file,
        } => (nexthop.as_str(), *tls, ca_file.clone()),
    };
    let nexthop = nexthop.trim();
    let nexthop = nexthop.strip_prefix("smtp:").unwrap_or(nexthop);
    let (host, port, mx_lookup) = postbay_smtp::outbound::Relay::parse_target(nexthop)
        .map_err(|e| anyhow::anyhow!("outbound.transports.{domain}: {e}"))?;
    let domain = domain.trim().to_ascii_lowercase();
    if domain.trim_start_matches('.').is_empty() || domain.contains(char::is_whitespace) {
        anyhow::bail!("outbound.transports: {domain:?} is not a domain or .domain");
    }
    Ok((
        domain,
        postbay_smtp::outbound::Relay {
            host,
            port,
            mx_lookup,
            // As for an MX unless set.
            tls: tls.map_or(TlsMode::Opportunistic, RelayTls::mode),
            user: None,
            password_file: None,
            ca_file,
        },
    ))
}

#[cfg(test)]
mod outbound_tests {
    use super::*;

    #[test]
    fn outbound_defaults_and_file() {
        let c = Config::default();
        assert_eq!(c.outbound.mx_port, 25);
        assert!(c.outbound.nameservers.is_empty());
        assert!(c.outbound_enabled(true) && !c.outbound_enabled(false));
        assert_eq!(c.outbound_settings().unwrap().hostname, "localhost");
        assert_eq!(c.outbound.lifetime, Duration::from_secs(5 * 86_400));
        let yaml = "outbound: {enabled: true, mx_port: 2525, nameservers: ['127.0.0.53:5353'], min_backoff: 2s}\n";
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, yaml).unwrap();
        let c = Config::load(Some(&file)).unwrap();
        assert!(c.outbound_enabled(false));
        assert_eq!(c.outbound.mx_port, 2525);
        assert_eq!(
            c.outbound.nameservers,
            vec!["127.0.0.53:5353".parse().unwrap()]
        );
        assert_eq!(
            c.outbound_settings().unwrap().backoff.min,
            Duration::from_secs(2)
        );
    }

    #[test]
    fn transports_and_connection_reuse_from_a_file() {
        use postbay_smtp::outbound::client::TlsMode;
        let yaml = r#"
outbound:
  connection_cache_time: 5s
  connection_reuse_count: 10
  relayhost_domains: [big.test]
  transports:
    partner.test: "smtp:[10.0.0.5]:2525"
    .corp.test: {nexthop: "mx.corp.test:587", tls: starttls}
"#;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, yaml).unwrap();
        let s = Config::load(Some(&file))
            .unwrap()
            .outbound_settings()
            .unwrap();
        assert_eq!(s.pool.idle, Duration::from_secs(5));
        assert_eq!(s.pool.max_uses, 10);
        assert_eq!(s.relay_domains, vec!["big.test".to_string()]);
        let (d, t) = &s.transports[0];
        assert_eq!(
            (d.as_str(), t.host.as_str(), t.port),
            (".corp.test", "mx.corp.test", 587)
        );
        assert!(t.mx_lookup && t.tls == TlsMode::RequireStartTls);
        let (d, t) = &s.transports[1];
        assert_eq!(
            (d.as_str(), t.host.as_str(), t.port),
            ("partner.test", "10.0.0.5", 2525)
        );
        assert!(!t.mx_lookup && t.tls == TlsMode::Opportunistic);
        let bad = "outbound: {transports: {x.test: \"[nope\"}}\n";
        std::fs::write(&file, bad).unwrap();
        let err = Config::load(Some(&file)).unwrap().outbound_settings();
        assert!(err
            .unwrap_err()
            .to_string()
            .contains("outbound.transports.x.test"));
    }
}

#[cfg(test)]
mod imap_tests {
    use super::*;

    /// The COMPRESS cap has its default and is read next to the flattened listener keys.
    #[test]
    fn max_compressed_sessions_default_and_file() {
        let c = Config::default();
        assert_eq!(c.imap.max_compressed_sessions, 1000);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(
            &file,
            "imap: {max_compressed_sessions: 50, max_connections: 70}\n",
        )
        .unwrap();
        let c = Config::load(Some(&file)).unwrap();
        assert_eq!(c.imap.max_compressed_sessions, 50);
        assert_eq!(c.imap.access.max_connections, 70);
    }
}

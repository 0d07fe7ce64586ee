//! Limits and timeouts of one IMAP server. Defaults follow Dovecot's and the RFCs' advice.

use std::time::Duration;

/// Everything an operator may tune; `Default` is a sensible production setting.
#[derive(Debug, Clone)]
pub struct ImapLimits {
    /// Longest command line (without literals) accepted. Longer lines end the connection:
    /// the rest of such a line cannot be told apart from a next command.
    pub max_line_length: usize,
    /// Largest literal (APPEND message, long argument) an authenticated client may send.
    pub max_literal_size: u32,
    /// Largest literal before authentication, so an anonymous client cannot make the
    /// server buffer megabytes.
    pub max_unauthenticated_literal: u32,
    /// Inactivity allowed after login. RFC 9051 §5.4: at least 30 minutes.
    pub idle_timeout: Duration,
    /// Time from connect to successful authentication ("autologout" of idle strangers).
    pub auth_timeout: Duration,
    /// Login throttle settings, used only by [`crate::ImapContext::new`], which builds an
    /// authenticator for this server alone; a process that serves several protocols shares
    /// one `postbay_auth::Authenticator` ([`crate::ImapContext::with_authenticator`]) and
    /// its policy instead. Mapped onto [`postbay_auth::LoginPolicy`] by
    /// [`ImapLimits::login_policy`].
    ///
    /// Delay of the answer to the first recent failed login; doubles per further one.
    pub failed_login_delay: Duration,
    /// Failed logins allowed per client network (IPv4 address, IPv6 /64) within
    /// `failure_window`.
    pub max_failures_per_ip: u32,
    /// Failed logins allowed per user name within `failure_window`.
    pub max_failures_per_user: u32,
    pub failure_window: Duration,
    /// Failed authentications after which one connection is closed.
    pub max_auth_attempts: u32,
    /// How often an IDLE session polls the folder's modseq for changes made elsewhere
    /// (other sessions, other replicas).
    pub idle_poll_interval: Duration,
    /// Interval of "* OK Still here" during IDLE, which keeps NAT entries alive.
    pub idle_keepalive: Duration,
    /// Allow LOGIN/AUTHENTICATE without TLS (Dovecot's `disable_plaintext_auth = no`).
    pub allow_plaintext_auth: bool,
    /// COMPRESS=DEFLATE sessions at once in this process; beyond, COMPRESS answers
    /// `NO [LIMIT]` (RFC 4978 §3 lets the server refuse, RFC 5530 §3 names the code) and the
    /// session goes on uncompressed. 0 refuses every COMPRESS. A busy compressed session
    /// holds up to [`postbay_net::deflate::MAX_BUSY_BYTES`] (272 KiB), a quiet one ~20 KiB.
    pub max_compressed_sessions: usize,
}

/// Default [`ImapLimits::max_compressed_sessions`]: 1,000 sessions busy at once take at most
/// ~270 MiB of codec state, a quarter of the chart's 1 GiB IMAP pod limit.
pub const DEFAULT_MAX_COMPRESSED_SESSIONS: usize = 1000;

impl Default for ImapLimits {
    fn default() -> Self {
        let login = postbay_auth::LoginPolicy::default();
        ImapLimits {
            max_line_length: 64 * 1024,
            max_literal_size: 64 * 1024 * 1024,
            max_unauthenticated_literal: 8 * 1024,
            idle_timeout: Duration::from_secs(30 * 60),
            auth_timeout: Duration::from_secs(60),
            failed_login_delay: login.failure_delay,
            max_failures_per_ip: login.max_failures_per_network,
            max_failures_per_user: login.max_failures_per_user,
            failure_window: login.failure_window,
            max_auth_attempts: 3,
            idle_poll_interval: Duration::from_millis(500),
            idle_keepalive: Duration::from_secs(120),
            allow_plaintext_auth: false,
            max_compressed_sessions: DEFAULT_MAX_COMPRESSED_SESSIONS,
        }
    }
}

impl ImapLimits {
    /// The login settings as the shared policy; the delay cap and table bound are the
    /// policy's defaults.
    pub fn login_policy(&self) -> postbay_auth::LoginPolicy {
        postbay_auth::LoginPolicy {
            failure_delay: self.failed_login_delay,
            max_failures_per_network: self.max_failures_per_ip,
            max_failures_per_user: self.max_failures_per_user,
            failure_window: self.failure_window,
            ..postbay_auth::LoginPolicy::default()
        }
    }
}

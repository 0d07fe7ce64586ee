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
    /// Delay before answering a failed login, so password guessing is slow.
    pub failed_login_delay: Duration,
    /// Failed logins allowed per client IP within `failure_window`.
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
}

impl Default for ImapLimits {
    fn default() -> Self {
        ImapLimits {
            max_line_length: 64 * 1024,
            max_literal_size: 64 * 1024 * 1024,
            max_unauthenticated_literal: 8 * 1024,
            idle_timeout: Duration::from_secs(30 * 60),
            auth_timeout: Duration::from_secs(60),
            failed_login_delay: Duration::from_millis(1500),
            max_failures_per_ip: 20,
            max_failures_per_user: 10,
            failure_window: Duration::from_secs(300),
            max_auth_attempts: 3,
            idle_poll_interval: Duration::from_millis(500),
            idle_keepalive: Duration::from_secs(120),
            allow_plaintext_auth: false,
        }
    }
}

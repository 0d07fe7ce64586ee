//! HELO and EHLO (RFC 5321 §4.1.1.1) with the extensions we offer.

use tokio::io::{AsyncRead, AsyncWrite};

use super::{Session, Transaction};
use crate::proto::reply::{multiline, Reply};

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) fn ehlo(&mut self, host: String, extended: bool) {
        if host.is_empty() {
            self.reply(Reply::syntax("Hostname required"));
            return;
        }
        self.helo = Some(host.clone());
        self.esmtp = extended;
        self.tx = Transaction::default();
        let hostname = &self.ctx.config.hostname;
        if !extended {
            self.reply(Reply::new(250, "2.0.0", hostname.clone()));
            return;
        }
        let mut lines = vec![
            format!("{hostname} Hello {host} [{}]", self.peer.ip()),
            "PIPELINING".to_string(),
            format!("SIZE {}", self.ctx.config.max_message_size),
            "8BITMIME".to_string(),
            "SMTPUTF8".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
            "CHUNKING".to_string(),
            // RFC 3461: NOTIFY, RET, ENVID, ORCPT are kept with the message and honoured.
            "DSN".to_string(),
        ];
        if self.tls.is_some() && !self.wire.stream.is_tls() {
            lines.push("STARTTLS".to_string());
        }
        // RFC 8314 §3.3 / RFC 4954 §4: passwords only ever cross TLS, so AUTH is not even
        // announced before it.
        if self.role.offers_auth() && self.wire.stream.is_tls() && self.login.is_none() {
            lines.push(format!("AUTH {}", super::auth::MECHANISMS));
        }
        multiline(250, &lines, self.wire.output_buffer());
    }
}

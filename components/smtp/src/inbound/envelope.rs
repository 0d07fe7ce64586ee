//! MAIL FROM and RCPT TO (RFC 5321 §4.1.1.2-3): who sends, who receives, and the relay
//! decision. Without authentication only our own domains are accepted as recipients; a
//! logged-in user may send to any domain, but only as an address of theirs (see
//! [`super::sender`]).

use smtp_proto::{MailFrom, RcptTo, MAIL_BODY_8BITMIME, MAIL_BODY_BINARYMIME, MAIL_SMTPUTF8};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{AcceptedRcpt, Role, Session};
use crate::proto::reply::Reply;
use postbay_store::Resolution;

/// RFC 5321 §4.5.3.1.3: the longest path we must accept.
const MAX_PATH_LEN: usize = 256;
/// RFC 3461 §4.4: ENVID is at most 100 characters; §4.2 ORCPT at most 500.
const MAX_ENVID_LEN: usize = 100;
const MAX_ORCPT_LEN: usize = 500;

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) fn mail(&mut self, from: MailFrom<String>) {
        if self.helo.is_none() {
            self.reply(Reply::bad_sequence("Send HELO/EHLO first"));
            return;
        }
        if self.tx.mail_from.is_some() {
            self.reply(Reply::bad_sequence("Nested MAIL command"));
            return;
        }
        if from.address.len() > MAX_PATH_LEN {
            self.reply(Reply::new(501, "5.1.7", "Sender address too long"));
            return;
        }
        if from.size > self.ctx.config.max_message_size {
            self.reply(Reply::too_big());
            return;
        }
        if from.flags & MAIL_BODY_BINARYMIME != 0 {
            self.reply(Reply::new(555, "5.5.4", "BINARYMIME not supported"));
            return;
        }
        if let Some(refusal) = self.submission_refusal(&from.address) {
            self.reply(refusal);
            return;
        }
        if from
            .env_id
            .as_ref()
            .is_some_and(|e| e.len() > MAX_ENVID_LEN)
        {
            self.reply(Reply::new(501, "5.5.4", "ENVID too long"));
            return;
        }
        self.tx.ret = crate::queue::dsn::Ret::from_flags(from.flags);
        self.tx.envid = from.env_id;
        self.tx.smtputf8 = from.flags & MAIL_SMTPUTF8 != 0;
        self.tx.eight_bit = from.flags & MAIL_BODY_8BITMIME != 0;
        self.tx.declared_size = from.size;
        self.tx.mail_from = Some(from.address);
        self.reply(Reply::new(250, "2.1.0", "Sender OK"));
    }

    pub(super) async fn rcpt(&mut self, to: RcptTo<String>) {
        if self.tx.mail_from.is_none() {
            self.reply(Reply::bad_sequence("Need MAIL before RCPT"));
            return;
        }
        if self.tx.rcpts.len() >= self.ctx.config.max_recipients {
            self.reply(
                Reply::new(452, "4.5.3", "Too many recipients").because("too_many_recipients"),
            );
            return;
        }
        if to.orcpt.as_ref().is_some_and(|o| o.len() > MAX_ORCPT_LEN) {
            self.reply(Reply::new(501, "5.5.4", "Malformed ORCPT"));
            return;
        }
        let dsn = (crate::queue::dsn::Notify::from_flags(to.flags), to.orcpt);
        let address = to.address;
        if address.is_empty() {
            // `<postmaster>` without a domain (RFC 5321 §4.5.1) means our own postmaster.
            let postmaster = format!("postmaster@{}", self.ctx.config.postmaster_domain());
            return self.accept_if_local(address, postmaster, dsn).await;
        }
        if address.len() > MAX_PATH_LEN {
            self.reply(Reply::new(501, "5.1.3", "Recipient address too long"));
            return;
        }
        if let Some(reply) = self.srs_bounce(&address, &dsn) {
            self.reply(reply);
            return;
        }
        if is_relay_trick(&address) {
            tracing::info!(peer = %self.peer, rcpt = address, "relay trick refused");
            self.reply(relay_denied());
            return;
        }
        self.accept_if_local(address.clone(), address, dsn).await;
    }

    /// RCPT to one of our SRS addresses: a bounce (or reply) to mail we forwarded goes back
    /// to its original sender, whoever sends it; a forged or expired one is refused. `None`:
    /// not an SRS address of ours (or SRS is off).
    fn srs_bounce(
        &mut self,
        address: &str,
        dsn: &(Option<crate::queue::dsn::Notify>, Option<String>),
    ) -> Option<Reply> {
        let srs = self.ctx.config.srs.as_ref()?;
        let (local, domain) = address.rsplit_once('@')?;
        if !domain.eq_ignore_ascii_case(&srs.domain) {
            return None;
        }
        match srs.reverse(local, crate::now_unix()) {
            Ok(original) => {
                tracing::info!(peer = %self.peer, rcpt = address, to = original, "SRS address, back to the original sender");
                self.tx.rcpts.push(AcceptedRcpt {
                    original: address.to_string(),
                    targets: vec![postbay_store::Recipient::Remote(original)],
                    notify: dsn.0,
                    orcpt: dsn.1.clone(),
                });
                Some(Reply::new(250, "2.1.5", "Recipient OK"))
            }
            Err(crate::outbound::srs::SrsError::NotSrs) => None,
            Err(e) => {
                tracing::info!(peer = %self.peer, rcpt = address, error = %e, "SRS address refused");
                Some(
                    Reply::new(550, "5.1.1", format!("Invalid SRS address: {e}"))
                        .because("unknown_user"),
                )
            }
        }
    }

    /// Why MAIL FROM is refused in this role and login state, if it is.
    fn submission_refusal(&self, mail_from: &str) -> Option<Reply> {
        let Some(login) = &self.login else {
            if self.role != Role::Submission {
                return None;
            }
            // RFC 6409 §4.3: the MSA takes mail from authenticated users only; AUTH itself
            // needs TLS first (RFC 8314 §3.3, and we never offer plaintext passwords).
            return Some(if self.wire.stream.is_tls() {
                Reply::new(530, "5.7.0", "Authentication required").because("auth_required")
            } else {
                Reply::new(530, "5.7.0", "Must issue a STARTTLS command first")
                    .because("tls_required")
            });
        };
        if !login.rights.allows_envelope(mail_from) {
            tracing::info!(peer = %self.peer, login = login.rights.login(), mail_from, "sender not owned by login");
            return Some(
                Reply::new(
                    553,
                    "5.7.1",
                    format!(
                        "Sender address rejected: not owned by user {}",
                        login.rights.login()
                    ),
                )
                .because("sender_mismatch"),
            );
        }
        let limited = self.ctx.sends.may_start(
            login.rights.login(),
            login.limits,
            std::time::Instant::now(),
        );
        if let Err(over) = limited {
            tracing::warn!(peer = %self.peer, login = login.rights.login(), ?over, "sending limit reached");
            return Some(
                Reply::new(450, "4.7.1", "Sending rate limit exceeded, try again later")
                    .because("rate_limit"),
            );
        }
        None
    }

    async fn accept_if_local(
        &mut self,
        original: String,
        lookup: String,
        (notify, orcpt): (Option<crate::queue::dsn::Notify>, Option<String>),
    ) {
        match self.ctx.store.resolve(&lookup).await {
            Ok(Resolution::Deliver(targets)) => {
                self.tx.rcpts.push(AcceptedRcpt {
                    original,
                    targets,
                    notify,
                    orcpt,
                });
                self.reply(Reply::new(250, "2.1.5", "Recipient OK"));
            }
            Ok(Resolution::Unknown) => self.reply(
                Reply::new(550, "5.1.1", "User unknown in virtual mailbox table")
                    .because("unknown_user"),
            ),
            Ok(Resolution::NonLocalDomain) if self.login.is_some() => {
                // A logged-in user's mail leaves through the queue's outbound delivery.
                self.tx.rcpts.push(AcceptedRcpt {
                    original,
                    targets: vec![postbay_store::Recipient::Remote(lookup)],
                    notify,
                    orcpt,
                });
                self.reply(Reply::new(250, "2.1.5", "Recipient OK"));
            }
            Ok(Resolution::NonLocalDomain) => {
                tracing::info!(peer = %self.peer, rcpt = lookup, "relay attempt refused");
                self.reply(relay_denied());
            }
            Err(e) => {
                tracing::error!(error = %e, "recipient lookup failed");
                self.reply(Reply::temporary_failure());
            }
        }
    }
}

fn relay_denied() -> Reply {
    Reply::new(554, "5.7.1", "Relay access denied").because("relay_denied")
}

/// Addresses that older MTAs would route somewhere else than their domain says: the `%`
/// hack, UUCP bang paths, quoted local parts hiding an `@`, and address literals. We never
/// interpret them, and we do not accept them either, so no downstream system can.
pub(super) fn is_relay_trick(address: &str) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return true;
    };
    local.contains(['%', '!', '@', '"'])
        || domain.starts_with('[')
        || domain.contains(['%', '!', ':'])
}

#[cfg(test)]
mod tests {
    use super::is_relay_trick;

    #[test]
    fn relay_tricks_are_recognised() {
        for trick in [
            "user%other.test@local.test",
            "other.test!user@local.test",
            "\"user@other.test\"@local.test",
            "user@[192.0.2.1]",
        ] {
            assert!(is_relay_trick(trick), "{trick}");
        }
        for fine in [
            "user@local.test",
            "first.last+tag@local.test",
            "o'brien@local.test",
        ] {
            assert!(!is_relay_trick(fine), "{fine}");
        }
    }
}

//! Junk training from the mail client: a message a user moves or copies into the `\Junk`
//! folder (RFC 6154) is learnt as spam by the filter, one moved out of it (anywhere but
//! `\Trash`) as ham, which is what Dovecot's IMAPSieve with rspamc does for Rspamd. It goes
//! over Rspamd's HTTP protocol (`POST /learnspam`, `/learnham`) to `imap.learn_url`, in the
//! background and a few at a time, so the IMAP answer never waits for it; a filter that is
//! down costs a log line, not the move.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

/// Messages learnt at once, per process.
const CONCURRENCY: usize = 4;
/// Messages learnt from one command at most (a bulk move of a whole folder is not a
/// training set).
const MAX_PER_COMMAND: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Spam,
    Ham,
}

impl Class {
    fn path(self) -> &'static str {
        match self {
            Class::Spam => "/learnspam",
            Class::Ham => "/learnham",
        }
    }
}

/// What a copy or move from a folder with special use `from` to one with `to` teaches.
pub fn direction(from: Option<&str>, to: Option<&str>) -> Option<Class> {
    let is = |s: Option<&str>, what: &str| s.is_some_and(|s| s.eq_ignore_ascii_case(what));
    match (is(from, "\\Junk"), is(to, "\\Junk")) {
        (false, true) => Some(Class::Spam),
        (true, false) if !is(to, "\\Trash") => Some(Class::Ham),
        _ => None,
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("imap.learn_url {0:?}: expected http://host:port")]
pub struct LearnUrlError(String);

/// The filter to teach.
#[derive(Debug)]
pub struct Learner {
    /// `host:port`.
    authority: String,
    slots: Arc<Semaphore>,
    timeout: Duration,
}

impl Learner {
    pub fn new(url: &str) -> Result<Learner, LearnUrlError> {
        let authority = url
            .strip_prefix("http://")
            .map(|rest| rest.trim_end_matches('/'))
            .filter(|a| !a.is_empty() && !a.contains('/') && a.contains(':'))
            .ok_or_else(|| LearnUrlError(url.to_string()))?;
        Ok(Learner {
            authority: authority.to_string(),
            slots: Arc::new(Semaphore::new(CONCURRENCY)),
            timeout: Duration::from_secs(30),
        })
    }

    /// Teaches the filter `class` for each message (blob paths) of `mailbox` (its address,
    /// sent as `Deliver-To` for per-domain classifiers), in the background.
    pub fn learn(
        self: &Arc<Self>,
        store: postbay_store::Store,
        mailbox: String,
        blobs: Vec<String>,
        class: Class,
    ) {
        if blobs.len() > MAX_PER_COMMAND {
            tracing::info!(
                messages = blobs.len(),
                learnt = MAX_PER_COMMAND,
                "a bulk move: only the first messages are learnt"
            );
        }
        let learner = self.clone();
        tokio::spawn(async move {
            for blob in blobs.into_iter().take(MAX_PER_COMMAND) {
                let Ok(permit) = learner.slots.clone().acquire_owned().await else {
                    return;
                };
                let message = match store.blobs().read(&blob).await {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::debug!(blob, error = %e, "message gone before it was learnt");
                        continue;
                    }
                };
                let learner = learner.clone();
                let mailbox = mailbox.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let post = learner.post(class, &mailbox, &message);
                    match tokio::time::timeout(learner.timeout, post).await {
                        Ok(Ok(status)) => {
                            tracing::info!(?class, status, "message learnt from a Junk move")
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(?class, error = %e, "learning from a Junk move failed")
                        }
                        Err(_) => tracing::warn!(?class, "learning from a Junk move timed out"),
                    }
                });
            }
        });
    }

    /// One HTTP/1.0 request, as rspamc sends it; `Ok` with the status for 2xx (208 is
    /// Rspamd's "already learnt").
    async fn post(&self, class: Class, mailbox: &str, message: &[u8]) -> std::io::Result<u16> {
        let mut tcp = tokio::net::TcpStream::connect(&self.authority).await?;
        // A login name is an address (no CR/LF); checked anyway, it goes into a header.
        let mailbox: String = mailbox.chars().filter(|c| !c.is_control()).collect();
        let head = format!(
            "POST {} HTTP/1.0\r\nHost: {}\r\nDeliver-To: {mailbox}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            class.path(),
            self.authority,
            message.len()
        );
        tcp.write_all(head.as_bytes()).await?;
        tcp.write_all(message).await?;
        let mut answer = Vec::new();
        tcp.take(64 * 1024).read_to_end(&mut answer).await?;
        let status = answer
            .split(|b| *b == b' ')
            .nth(1)
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| std::io::Error::other("no HTTP status line"))?;
        if (200..300).contains(&status) {
            Ok(status)
        } else {
            Err(std::io::Error::other(format!(
                "the filter answered {status}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_into_and_out_of_junk_teach_spam_and_ham() {
        let junk = Some("\\Junk");
        assert_eq!(direction(None, junk), Some(Class::Spam));
        assert_eq!(
            direction(Some("\\Archive"), Some("\\junk")),
            Some(Class::Spam)
        );
        assert_eq!(direction(junk, None), Some(Class::Ham));
        assert_eq!(
            direction(junk, Some("\\Trash")),
            None,
            "deleting spam is not ham"
        );
        assert_eq!(direction(junk, junk), None);
        assert_eq!(direction(None, Some("\\Sent")), None);
    }

    #[test]
    fn learn_urls_name_a_host_and_port() {
        assert!(Learner::new("http://postbay-filter:11332").is_ok());
        assert!(Learner::new("http://127.0.0.1:11333/").is_ok());
        for bad in ["", "https://a:1", "http://a", "http://a:1/x", "a:1"] {
            assert!(Learner::new(bad).is_err(), "{bad:?}");
        }
    }
}

//! LMTP client (RFC 2033) used by the queue to hand messages to the mailbox component.
//! Connections are kept and reused; commands are pipelined; every accepted recipient gets
//! its own final reply. The queue id travels as TRANSID (RFC 1845), which the mailbox uses
//! to make a repeated delivery of the same message a no-op. The message's trace context
//! travels as `XTRACE=<traceparent>` when the server advertises XTRACE.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::proto::dot_stuff;
use crate::queue::{Envelope, QueuedRecipient};

const IO_TIMEOUT: Duration = Duration::from_secs(120);
const MAX_IDLE_CONNECTIONS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum LmtpError {
    #[error("cannot reach LMTP server {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("LMTP i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("LMTP server timed out")]
    Timeout,
    #[error("LMTP server sent a malformed reply: {0:?}")]
    BadReply(String),
    #[error("LMTP server refused the session: {0}")]
    Refused(String),
}

/// One server reply: code and full text (last line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReply {
    pub code: u16,
    pub text: String,
}

impl ServerReply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }
}

struct Conn {
    stream: BufStream<TcpStream>,
    /// The server advertised XTRACE: the message's trace context may go on MAIL.
    xtrace: bool,
}

pub struct LmtpClient {
    /// `host:port`; resolved on every new connection, so a Service name spreads
    /// connections over the mailbox replicas behind it.
    addr: String,
    hostname: String,
    idle: Mutex<Vec<Conn>>,
}

impl LmtpClient {
    pub fn new(addr: String, hostname: String) -> LmtpClient {
        LmtpClient {
            addr,
            hostname,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Delivers `message` to `recipients` and returns one reply per recipient, in order.
    pub async fn deliver(
        &self,
        envelope: &Envelope,
        recipients: &[&QueuedRecipient],
        message: &[u8],
    ) -> Result<Vec<ServerReply>, LmtpError> {
        let started = std::time::Instant::now();
        let pooled = self.idle.lock().await.pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        match tokio::time::timeout(
            IO_TIMEOUT * 2,
            transaction(&mut conn, envelope, recipients, message),
        )
        .await
        {
            Ok(Ok(replies)) => {
                let mut idle = self.idle.lock().await;
                if idle.len() < MAX_IDLE_CONNECTIONS {
                    idle.push(conn);
                }
                postbay_telemetry::lmtp_delivery(started.elapsed());
                Ok(replies)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(LmtpError::Timeout),
        }
    }

    async fn connect(&self) -> Result<Conn, LmtpError> {
        let tcp = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(self.addr.as_str()))
            .await
            .map_err(|_| LmtpError::Timeout)?
            .map_err(|source| LmtpError::Connect {
                addr: self.addr.clone(),
                source,
            })?;
        tcp.set_nodelay(true)?;
        let mut conn = Conn {
            stream: BufStream::new(tcp),
            xtrace: false,
        };
        let greeting = read_reply(&mut conn).await?;
        if greeting.code != 220 {
            return Err(LmtpError::Refused(greeting.text));
        }
        conn.stream
            .write_all(format!("LHLO {}\r\n", self.hostname).as_bytes())
            .await?;
        conn.stream.flush().await?;
        let (hello, extensions) = read_reply_lines(&mut conn).await?;
        if hello.code != 250 {
            return Err(LmtpError::Refused(hello.text));
        }
        conn.xtrace = extensions
            .iter()
            .any(|e| e.eq_ignore_ascii_case(super::XTRACE));
        Ok(conn)
    }
}

async fn transaction(
    conn: &mut Conn,
    envelope: &Envelope,
    recipients: &[&QueuedRecipient],
    message: &[u8],
) -> Result<Vec<ServerReply>, LmtpError> {
    let mut params = format!(" TRANSID=<{}@postbay>", envelope.id);
    // Only to a server that asked for it: another LMTP server (Dovecot) refuses unknown
    // MAIL parameters.
    if conn.xtrace {
        if let Some(tp) = postbay_telemetry::traces::traceparent(&tracing::Span::current()) {
            params.push_str(&format!(" {}={tp}", super::XTRACE));
        }
    }
    if envelope.eight_bit {
        params.push_str(" BODY=8BITMIME");
    }
    if envelope.smtputf8 {
        params.push_str(" SMTPUTF8");
    }
    let mut commands = format!("MAIL FROM:<{}>{params}\r\n", envelope.mail_from);
    for rcpt in recipients {
        commands.push_str(&format!("RCPT TO:<{}>\r\n", rcpt.address));
    }
    commands.push_str("DATA\r\n");
    conn.stream.write_all(commands.as_bytes()).await?;
    conn.stream.flush().await?;

    let mail = read_reply(conn).await?;
    let mut rcpt_replies = Vec::with_capacity(recipients.len());
    for _ in recipients {
        rcpt_replies.push(read_reply(conn).await?);
    }
    let data = read_reply(conn).await?;
    if !mail.is_success() {
        return Ok(vec![mail; recipients.len()]);
    }
    if data.code != 354 {
        // No content was sent; recipients that were accepted share the DATA failure.
        return Ok(rcpt_replies
            .into_iter()
            .map(|r| if r.is_success() { data.clone() } else { r })
            .collect());
    }
    conn.stream.write_all(&dot_stuff(message)).await?;
    conn.stream.flush().await?;
    let mut out = Vec::with_capacity(recipients.len());
    for reply in rcpt_replies {
        if reply.is_success() {
            out.push(read_reply(conn).await?);
        } else {
            out.push(reply);
        }
    }
    Ok(out)
}

async fn read_reply(conn: &mut Conn) -> Result<ServerReply, LmtpError> {
    Ok(read_reply_lines(conn).await?.0)
}

/// A reply and the text of each of its lines (an LHLO reply's extensions).
async fn read_reply_lines(conn: &mut Conn) -> Result<(ServerReply, Vec<String>), LmtpError> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(IO_TIMEOUT, conn.stream.read_line(&mut line))
            .await
            .map_err(|_| LmtpError::Timeout)??;
        if n == 0 {
            return Err(LmtpError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.len() < 3 || !line.is_char_boundary(3) {
            return Err(LmtpError::BadReply(line.to_string()));
        }
        let code: u16 = line[..3]
            .parse()
            .map_err(|_| LmtpError::BadReply(line.to_string()))?;
        let more = line.as_bytes().get(3) == Some(&b'-');
        let text = line.get(4..).unwrap_or("").to_string();
        lines.push(text.clone());
        if !more {
            return Ok((ServerReply { code, text }, lines));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::proto::dot_stuff;

    #[test]
    fn dot_stuffing_round_trips_lines_starting_with_dots() {
        assert_eq!(dot_stuff(b".a\r\nb\r\n.\r\n"), b"..a\r\nb\r\n..\r\n.\r\n");
        assert_eq!(dot_stuff(b"no newline"), b"no newline\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b".\r\n");
    }
}

//! The SMTP client (RFC 5321) that carries a message to another server: greeting, EHLO (HELO
//! when EHLO is refused), opportunistic or required STARTTLS (RFC 3207), AUTH PLAIN/LOGIN for
//! a smarthost, then transactions with one final answer per recipient. Replies and EHLO
//! capabilities are parsed by smtp-proto's client side (as in Stalwart's MX client); this
//! module only moves bytes and decides. Every read has the timeout RFC 5321 §4.5.3.2 gives
//! its step, and a reply is at most 4 KiB (smtp-proto's limit), the buffer at most 64 KiB.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use smtp_proto::response::parser::ResponseReceiver;
use smtp_proto::{EhloResponse, Response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

use super::tls::{self, CertStatus};
use crate::lmtp::client::ServerReply;
use crate::proto::dot_stuff;

/// Waits of RFC 5321 §4.5.3.2 (connect: Postfix's `smtp_connect_timeout`).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// §4.5.3.2.1 initial 220, also EHLO, STARTTLS, AUTH, MAIL (§4.5.3.2.2), RCPT (.3).
    pub command: Duration,
    /// §4.5.3.2.4: the 354 after DATA.
    pub data_init: Duration,
    /// §4.5.3.2.5: each write of content.
    pub data_block: Duration,
    /// §4.5.3.2.6: the reply after the final dot.
    pub data_done: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(30),
            command: Duration::from_secs(300),
            data_init: Duration::from_secs(120),
            data_block: Duration::from_secs(180),
            data_done: Duration::from_secs(600),
        }
    }
}

/// A session failure: everything not yet answered is retried later (temporary).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error("malformed reply: {0}")]
    Protocol(String),
    #[error("connection closed by the server")]
    Closed,
    /// The server refused the session (greeting, EHLO/HELO, STARTTLS, AUTH): its reply.
    #[error("{stage} refused: {} {}", reply.code, reply.text)]
    Refused {
        stage: &'static str,
        reply: ServerReply,
    },
    #[error("TLS: {0}")]
    Tls(String),
    /// The TLS handshake failed; rustls says why (a certificate that did not verify...).
    #[error("TLS handshake: {0}")]
    Handshake(rustls::Error),
    /// TLS was required (a policy, or the relay's setting) and STARTTLS was not offered.
    #[error("STARTTLS required but not offered")]
    StartTlsMissing,
}

/// How TLS is used on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// STARTTLS when offered, any certificate (RFC 7435); plain text otherwise.
    Opportunistic,
    /// STARTTLS must be offered and the certificate must verify (a smarthost on 587).
    RequireStartTls,
    /// TLS from the first byte, certificate verified (a smarthost on 465, RFC 8314).
    Implicit,
    /// STARTTLS must be offered, any certificate: DANE with only unusable TLSA records
    /// (RFC 7672 §2.2), Postfix's "encrypt" level.
    Encrypt,
}

#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

/// What a connection needs besides the address.
#[derive(Clone)]
pub struct ConnectOptions {
    /// Our name in EHLO.
    pub hostname: String,
    pub timeouts: Timeouts,
    pub tls: TlsMode,
    pub roots: Arc<rustls::RootCertStore>,
    pub auth: Option<Credentials>,
    /// DANE: the certificate must match these TLSA records (STARTTLS required).
    pub dane: Option<super::dane::DaneCheck>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

const MAX_BUFFERED: usize = 64 * 1024;

/// The largest BDAT chunk sent (1 MiB): big enough that a typical message is one chunk,
/// small enough that a slow server's reply timeout covers one chunk's transfer.
pub const BDAT_CHUNK: usize = 1024 * 1024;

/// A stream and the bytes read from it but not yet parsed.
struct Wire<S> {
    io: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    async fn fill(&mut self, timeout: Duration, what: &'static str) -> Result<(), ClientError> {
        if self.buf.len() >= MAX_BUFFERED {
            return Err(ClientError::Protocol("reply too long".into()));
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(timeout, self.io.read(&mut chunk))
            .await
            .map_err(|_| ClientError::Timeout(what))??;
        if n == 0 {
            return Err(ClientError::Closed);
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    async fn send(&mut self, bytes: &[u8], timeout: Duration) -> Result<(), ClientError> {
        tokio::time::timeout(timeout, async {
            self.io.write_all(bytes).await?;
            self.io.flush().await
        })
        .await
        .map_err(|_| ClientError::Timeout("the server to read"))??;
        Ok(())
    }

    async fn reply(
        &mut self,
        timeout: Duration,
        what: &'static str,
    ) -> Result<ServerReply, ClientError> {
        loop {
            if let Some(reply) = parse_reply(&mut self.buf)? {
                return Ok(reply);
            }
            self.fill(timeout, what).await?;
        }
    }

    /// The EHLO answer: capabilities on 250, otherwise the refusal.
    async fn ehlo(
        &mut self,
        timeout: Duration,
    ) -> Result<Result<EhloResponse<String>, ServerReply>, ClientError> {
        loop {
            let mut iter = self.buf.iter();
            match EhloResponse::parse(&mut iter) {
                Ok(ehlo) => {
                    let used = self.buf.len() - iter.len();
                    self.buf.drain(..used);
                    return Ok(Ok(ehlo));
                }
                Err(smtp_proto::Error::NeedsMoreData { .. }) => {}
                Err(smtp_proto::Error::InvalidResponse { .. }) => {
                    // Not a 250: read it as an ordinary reply (e.g. 502 for HELO-only servers).
                    return Ok(Err(self.reply(timeout, "the EHLO reply").await?));
                }
                Err(e) => return Err(ClientError::Protocol(format!("EHLO reply: {e:?}"))),
            }
            self.fill(timeout, "the EHLO reply").await?;
        }
    }
}

/// Takes one complete reply off the front of `buf`, if it holds one.
pub fn parse_reply(buf: &mut Vec<u8>) -> Result<Option<ServerReply>, ClientError> {
    let mut iter = buf.iter();
    match ResponseReceiver::default().parse(&mut iter) {
        Ok(response) => {
            let used = buf.len() - iter.len();
            buf.drain(..used);
            Ok(Some(to_reply(response)))
        }
        Err(smtp_proto::Error::NeedsMoreData { .. }) => Ok(None),
        Err(e) => Err(ClientError::Protocol(format!("{e:?}"))),
    }
}

fn to_reply(r: Response<String>) -> ServerReply {
    let text = r.message.replace('\n', " ");
    let text = if r.esc[0] != 0 {
        format!("{}.{}.{} {}", r.esc[0], r.esc[1], r.esc[2], text)
    } else {
        text
    };
    ServerReply { code: r.code, text }
}

/// What the server offered in EHLO (nothing after HELO).
#[derive(Debug, Clone, Copy, Default)]
pub struct Capabilities {
    pub flags: u32,
    /// SIZE limit (RFC 1870); 0 = none announced.
    pub size: usize,
    pub auth: u64,
}

impl Capabilities {
    fn from_ehlo(e: &EhloResponse<String>) -> Capabilities {
        Capabilities {
            flags: e.capabilities,
            size: e.size,
            auth: e.auth_mechanisms,
        }
    }
    pub fn has(&self, ext: u32) -> bool {
        self.flags & ext != 0
    }
}

/// An established session, ready for transactions.
pub struct Session {
    wire: Wire<Box<dyn Io>>,
    pub caps: Capabilities,
    /// Whether the session runs over TLS, and how the certificate fared.
    pub tls: Option<CertStatus>,
    pub addr: SocketAddr,
    timeouts: Timeouts,
    /// Whether the last [`Session::send`] got as far as the MAIL reply: a reused connection
    /// that broke before it (the server closed it while idle) carried nothing, so the
    /// transaction may go at once over a new one.
    mail_answered: bool,
}

/// Connects to `addr` (`server_name`: the MX host name, for TLS) and sets the session up.
pub async fn connect(
    addr: SocketAddr,
    server_name: &str,
    opts: &ConnectOptions,
) -> Result<Session, ClientError> {
    let t = opts.timeouts;
    let tcp = tokio::time::timeout(t.connect, TcpStream::connect(addr))
        .await
        .map_err(|_| ClientError::Timeout("the TCP connection"))?
        .map_err(|source| ClientError::Connect { addr, source })?;
    tcp.set_nodelay(true)?;
    let name = ServerNameOwned::new(server_name, addr)?;
    let mut session = if opts.tls == TlsMode::Implicit {
        let config = tls::strict_config(opts.roots.clone());
        let stream = handshake(config, name, tcp, t).await?;
        let mut wire = Wire {
            io: Box::new(stream) as Box<dyn Io>,
            buf: Vec::new(),
        };
        greeting(&mut wire, t).await?;
        let caps = hello(&mut wire, opts).await?;
        Session {
            wire,
            caps,
            tls: Some(CertStatus::Verified),
            addr,
            timeouts: t,
            mail_answered: false,
        }
    } else {
        let mut wire = Wire {
            io: tcp,
            buf: Vec::new(),
        };
        greeting(&mut wire, t).await?;
        let caps = hello(&mut wire, opts).await?;
        let offered = caps.has(smtp_proto::EXT_START_TLS);
        let required = opts.tls != TlsMode::Opportunistic || opts.dane.is_some();
        if !offered && required {
            return Err(ClientError::StartTlsMissing);
        }
        if offered {
            wire.send(b"STARTTLS\r\n", t.command).await?;
            let reply = wire.reply(t.command, "the STARTTLS reply").await?;
            if reply.code != 220 {
                if required {
                    return Err(ClientError::Refused {
                        stage: "STARTTLS",
                        reply,
                    });
                }
                tracing::info!(%addr, code = reply.code, "STARTTLS refused; continuing in plain text");
                plain_session(wire, caps, addr, t)
            } else {
                // Bytes after the 220 were sent before TLS and must not be trusted
                // (CVE-2011-0411, "STARTTLS command injection").
                if !wire.buf.is_empty() {
                    return Err(ClientError::Protocol(
                        "data after the STARTTLS reply".into(),
                    ));
                }
                let (config, outcome) = match (&opts.dane, opts.tls) {
                    (Some(check), _) => (check.client_config(), None),
                    (None, TlsMode::Opportunistic | TlsMode::Encrypt) => {
                        let (c, o) = tls::opportunistic_config(opts.roots.clone());
                        (c, Some(o))
                    }
                    (None, _) => (tls::strict_config(opts.roots.clone()), None),
                };
                let stream = handshake(config, name, wire.io, t).await?;
                let mut wire = Wire {
                    io: Box::new(stream) as Box<dyn Io>,
                    buf: Vec::new(),
                };
                // RFC 3207 §4.2: forget what was learned before TLS, ask again.
                let caps = hello(&mut wire, opts).await?;
                let cert = match outcome {
                    Some(o) => o
                        .lock()
                        .ok()
                        .and_then(|o| o.cert.clone())
                        .unwrap_or(CertStatus::Unverified("no certificate".into())),
                    None => CertStatus::Verified,
                };
                Session {
                    wire,
                    caps,
                    tls: Some(cert),
                    addr,
                    timeouts: t,
                    mail_answered: false,
                }
            }
        } else {
            plain_session(wire, caps, addr, t)
        }
    };
    if let Some(creds) = &opts.auth {
        session.authenticate(creds).await?;
    }
    Ok(session)
}

fn plain_session(
    wire: Wire<TcpStream>,
    caps: Capabilities,
    addr: SocketAddr,
    t: Timeouts,
) -> Session {
    Session {
        wire: Wire {
            io: Box::new(wire.io),
            buf: wire.buf,
        },
        caps,
        tls: None,
        addr,
        timeouts: t,
        mail_answered: false,
    }
}

/// A rustls server name: the MX host's name, or its address when we only have one.
struct ServerNameOwned(rustls::pki_types::ServerName<'static>);

impl ServerNameOwned {
    fn new(name: &str, addr: SocketAddr) -> Result<ServerNameOwned, ClientError> {
        let name = name.trim_end_matches('.');
        let parsed = rustls::pki_types::ServerName::try_from(name.to_string())
            .unwrap_or_else(|_| rustls::pki_types::ServerName::from(addr.ip()));
        Ok(ServerNameOwned(parsed))
    }
}

async fn handshake(
    config: Arc<rustls::ClientConfig>,
    name: ServerNameOwned,
    tcp: TcpStream,
    t: Timeouts,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ClientError> {
    let connector = tokio_rustls::TlsConnector::from(config);
    tokio::time::timeout(t.command, connector.connect(name.0, tcp))
        .await
        .map_err(|_| ClientError::Timeout("the TLS handshake"))?
        .map_err(|e| {
            match e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                Some(tls) => ClientError::Handshake(tls.clone()),
                None => ClientError::Tls(e.to_string()),
            }
        })
}

async fn greeting<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<S>,
    t: Timeouts,
) -> Result<(), ClientError> {
    let reply = wire.reply(t.command, "the greeting").await?;
    if reply.code != 220 {
        return Err(ClientError::Refused {
            stage: "greeting",
            reply,
        });
    }
    Ok(())
}

/// EHLO, or HELO when the server refuses EHLO with a 5xx (RFC 5321 §3.2).
async fn hello<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<S>,
    opts: &ConnectOptions,
) -> Result<Capabilities, ClientError> {
    let t = opts.timeouts;
    wire.send(format!("EHLO {}\r\n", opts.hostname).as_bytes(), t.command)
        .await?;
    match wire.ehlo(t.command).await? {
        Ok(ehlo) => Ok(Capabilities::from_ehlo(&ehlo)),
        Err(reply) if reply.code >= 500 => {
            wire.send(format!("HELO {}\r\n", opts.hostname).as_bytes(), t.command)
                .await?;
            let reply = wire.reply(t.command, "the HELO reply").await?;
            if reply.code != 250 {
                return Err(ClientError::Refused {
                    stage: "HELO",
                    reply,
                });
            }
            Ok(Capabilities::default())
        }
        Err(reply) => Err(ClientError::Refused {
            stage: "EHLO",
            reply,
        }),
    }
}

/// One message for one server.
pub struct Transaction<'a> {
    pub mail_from: &'a str,
    pub recipients: &'a [&'a str],
    pub message: &'a [u8],
    /// Send `BODY=8BITMIME` (the server offered it and the message has 8-bit content).
    pub eight_bit: bool,
    /// Send `SMTPUTF8` (the server offered it and the message needs it).
    pub smtputf8: bool,
    /// RFC 3461 parameters, sent only when the server offers DSN: for MAIL (`RET=`,
    /// `ENVID=`) and per recipient (`NOTIFY=`, `ORCPT=`), already encoded; empty for none.
    pub dsn_mail: &'a str,
    pub dsn_rcpt: &'a [String],
}

impl Session {
    async fn authenticate(&mut self, creds: &Credentials) -> Result<(), ClientError> {
        let t = self.timeouts.command;
        let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
        let reply = if self.caps.auth & smtp_proto::AUTH_PLAIN != 0 {
            let token = b64(format!("\0{}\0{}", creds.user, creds.password).as_bytes());
            self.wire
                .send(format!("AUTH PLAIN {token}\r\n").as_bytes(), t)
                .await?;
            self.wire.reply(t, "the AUTH reply").await?
        } else if self.caps.auth & smtp_proto::AUTH_LOGIN != 0 {
            self.wire.send(b"AUTH LOGIN\r\n", t).await?;
            let mut reply = self.wire.reply(t, "the AUTH reply").await?;
            for answer in [&creds.user, &creds.password] {
                if reply.code != 334 {
                    break;
                }
                self.wire
                    .send(format!("{}\r\n", b64(answer.as_bytes())).as_bytes(), t)
                    .await?;
                reply = self.wire.reply(t, "the AUTH reply").await?;
            }
            reply
        } else {
            return Err(ClientError::Refused {
                stage: "AUTH",
                reply: ServerReply {
                    code: 530,
                    text: "server offers neither AUTH PLAIN nor LOGIN".into(),
                },
            });
        };
        if reply.code != 235 {
            return Err(ClientError::Refused {
                stage: "AUTH",
                reply,
            });
        }
        Ok(())
    }

    /// Runs one transaction; returns each recipient's final reply, in order. PIPELINING
    /// (RFC 2920) sends MAIL, every RCPT and DATA in one write when offered. An `Err` means
    /// the session broke: recipients without a reply are deferred.
    pub async fn send(&mut self, tx: &Transaction<'_>) -> Result<Vec<ServerReply>, ClientError> {
        self.mail_answered = false;
        if self.caps.has(smtp_proto::EXT_CHUNKING) {
            return self.send_chunked(tx).await;
        }
        let t = self.timeouts;
        let (mail, rcpts) = self.envelope_commands(tx);
        let mut rcpt_replies = Vec::with_capacity(rcpts.len());
        let data_reply;
        if self.caps.has(smtp_proto::EXT_PIPELINING) {
            let mut batch = mail.into_bytes();
            for r in &rcpts {
                batch.extend_from_slice(r.as_bytes());
            }
            batch.extend_from_slice(b"DATA\r\n");
            self.wire.send(&batch, t.command).await?;
            let mail_reply = self.wire.reply(t.command, "the MAIL reply").await?;
            self.mail_answered = true;
            for _ in &rcpts {
                rcpt_replies.push(self.wire.reply(t.command, "a RCPT reply").await?);
            }
            data_reply = self.wire.reply(t.data_init, "the DATA reply").await?;
            if mail_reply.code != 250 {
                if data_reply.code == 354 {
                    self.abort_data().await?;
                }
                self.reset().await?;
                return Ok(vec![mail_reply; rcpts.len()]);
            }
        } else {
            self.wire.send(mail.as_bytes(), t.command).await?;
            let mail_reply = self.wire.reply(t.command, "the MAIL reply").await?;
            self.mail_answered = true;
            if mail_reply.code != 250 {
                self.reset().await?;
                return Ok(vec![mail_reply; rcpts.len()]);
            }
            for r in &rcpts {
                self.wire.send(r.as_bytes(), t.command).await?;
                rcpt_replies.push(self.wire.reply(t.command, "a RCPT reply").await?);
            }
            if !rcpt_replies.iter().any(|r| r.is_success()) {
                self.reset().await?;
                return Ok(rcpt_replies);
            }
            self.wire.send(b"DATA\r\n", t.command).await?;
            data_reply = self.wire.reply(t.data_init, "the DATA reply").await?;
        }
        let accepted = rcpt_replies.iter().any(|r| r.is_success());
        if data_reply.code != 354 {
            if accepted {
                self.reset().await?;
            }
            return Ok(rcpt_replies
                .into_iter()
                .map(|r| {
                    if r.is_success() {
                        data_reply.clone()
                    } else {
                        r
                    }
                })
                .collect());
        }
        if !accepted {
            // 354 with no recipient: end the empty content without sending the message.
            self.abort_data().await?;
            return Ok(rcpt_replies);
        }
        let content = dot_stuff(tx.message);
        for block in content.chunks(64 * 1024) {
            self.wire.send(block, t.data_block).await?;
        }
        let done = self
            .wire
            .reply(t.data_done, "the reply to the end of data")
            .await?;
        Ok(rcpt_replies
            .into_iter()
            .map(|r| if r.is_success() { done.clone() } else { r })
            .collect())
    }

    /// MAIL (with SIZE, BODY, SMTPUTF8 as offered and needed) and one RCPT per recipient.
    fn envelope_commands(&self, tx: &Transaction<'_>) -> (String, Vec<String>) {
        let mut mail = format!("MAIL FROM:<{}>", tx.mail_from);
        if self.caps.has(smtp_proto::EXT_SIZE) {
            mail.push_str(&format!(" SIZE={}", tx.message.len()));
        }
        if tx.eight_bit {
            mail.push_str(" BODY=8BITMIME");
        }
        if tx.smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        let dsn = self.caps.has(smtp_proto::EXT_DSN);
        if dsn && !tx.dsn_mail.is_empty() {
            mail.push(' ');
            mail.push_str(tx.dsn_mail);
        }
        mail.push_str("\r\n");
        let rcpts = tx
            .recipients
            .iter()
            .enumerate()
            .map(
                |(i, r)| match tx.dsn_rcpt.get(i).filter(|p| dsn && !p.is_empty()) {
                    Some(params) => format!("RCPT TO:<{r}> {params}\r\n"),
                    None => format!("RCPT TO:<{r}>\r\n"),
                },
            )
            .collect();
        (mail, rcpts)
    }

    /// CHUNKING (RFC 3030): MAIL and the RCPTs (pipelined when offered, RFC 3030 §4.2), then,
    /// if any recipient was accepted, the message in BDAT chunks of at most [`BDAT_CHUNK`]
    /// bytes as it is, no dot-stuffing; the last chunk's reply is every accepted
    /// recipient's answer. A refused chunk ends the transaction with that reply.
    async fn send_chunked(
        &mut self,
        tx: &Transaction<'_>,
    ) -> Result<Vec<ServerReply>, ClientError> {
        let t = self.timeouts;
        let (mail, rcpts) = self.envelope_commands(tx);
        let pipelining = self.caps.has(smtp_proto::EXT_PIPELINING);
        let mut rcpt_replies = Vec::with_capacity(rcpts.len());
        if pipelining {
            let mut batch = mail.into_bytes();
            for r in &rcpts {
                batch.extend_from_slice(r.as_bytes());
            }
            self.wire.send(&batch, t.command).await?;
        } else {
            self.wire.send(mail.as_bytes(), t.command).await?;
        }
        let mail_reply = self.wire.reply(t.command, "the MAIL reply").await?;
        self.mail_answered = true;
        if mail_reply.code != 250 {
            if pipelining {
                // The RCPTs were sent anyway; their replies must be read before RSET.
                for _ in &rcpts {
                    self.wire.reply(t.command, "a RCPT reply").await?;
                }
            }
            self.reset().await?;
            return Ok(vec![mail_reply; rcpts.len()]);
        }
        for r in &rcpts {
            if !pipelining {
                self.wire.send(r.as_bytes(), t.command).await?;
            }
            rcpt_replies.push(self.wire.reply(t.command, "a RCPT reply").await?);
        }
        if !rcpt_replies.iter().any(|r| r.is_success()) {
            self.reset().await?;
            return Ok(rcpt_replies);
        }
        let chunks: Vec<&[u8]> = if tx.message.is_empty() {
            vec![&[][..]]
        } else {
            tx.message.chunks(BDAT_CHUNK).collect()
        };
        let mut done = None;
        for (i, chunk) in chunks.iter().enumerate() {
            let is_last = i + 1 == chunks.len();
            let head = if is_last {
                format!("BDAT {} LAST\r\n", chunk.len())
            } else {
                format!("BDAT {}\r\n", chunk.len())
            };
            self.wire.send(head.as_bytes(), t.data_block).await?;
            self.wire.send(chunk, t.data_block).await?;
            let wait = if is_last { t.data_done } else { t.data_block };
            let reply = self.wire.reply(wait, "a BDAT reply").await?;
            if is_last || !reply.is_success() {
                // §2: after a refused chunk the transaction is over; RSET clears it.
                if !is_last {
                    self.reset().await?;
                }
                done = Some(reply);
                break;
            }
        }
        let Some(done) = done else {
            return Err(ClientError::Protocol("no BDAT chunk was sent".into()));
        };
        Ok(rcpt_replies
            .into_iter()
            .map(|r| if r.is_success() { done.clone() } else { r })
            .collect())
    }

    /// Whether the last [`Session::send`] saw the MAIL reply (see the field).
    pub fn mail_answered(&self) -> bool {
        self.mail_answered
    }

    async fn abort_data(&mut self) -> Result<(), ClientError> {
        self.wire.send(b".\r\n", self.timeouts.data_block).await?;
        self.wire
            .reply(self.timeouts.data_done, "the reply to an empty DATA")
            .await?;
        Ok(())
    }

    /// RSET, so the session can carry another transaction.
    pub async fn reset(&mut self) -> Result<(), ClientError> {
        self.wire.send(b"RSET\r\n", self.timeouts.command).await?;
        let reply = self
            .wire
            .reply(self.timeouts.command, "the RSET reply")
            .await?;
        if reply.code != 250 {
            return Err(ClientError::Refused {
                stage: "RSET",
                reply,
            });
        }
        Ok(())
    }

    /// QUIT, politely and briefly (the mail is already handed over).
    pub async fn quit(mut self) {
        let t = Duration::from_secs(5);
        if self.wire.send(b"QUIT\r\n", t).await.is_ok() {
            let _ = self.wire.reply(t, "the QUIT reply").await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_taken_one_at_a_time_with_enhanced_codes() {
        let mut buf = b"250-first\r\n250 2.1.0 Ok\r\n550 5.1.1 <x@y> unknown\r\n354 go".to_vec();
        let r = parse_reply(&mut buf).unwrap().unwrap();
        assert_eq!(r.code, 250);
        let r = parse_reply(&mut buf).unwrap().unwrap();
        assert_eq!((r.code, r.text.as_str()), (550, "5.1.1 <x@y> unknown"));
        assert!(parse_reply(&mut buf).unwrap().is_none(), "incomplete line");
        buf.extend_from_slice(b"\r\n");
        assert_eq!(parse_reply(&mut buf).unwrap().unwrap().code, 354);
        assert!(buf.is_empty());
    }

    #[test]
    fn an_overlong_reply_is_an_error() {
        let mut buf = b"250-".to_vec();
        buf.extend(std::iter::repeat_n(b'a', 10_000));
        buf.extend_from_slice(b"\r\n250 ok\r\n");
        assert!(parse_reply(&mut buf).is_err());
    }

    #[tokio::test]
    async fn ehlo_capabilities_are_parsed() {
        let (client, mut server) = tokio::io::duplex(4096);
        server
            .write_all(b"250-mx.example Hi\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250 STARTTLS\r\n")
            .await
            .unwrap();
        let mut wire = Wire {
            io: client,
            buf: Vec::new(),
        };
        let ehlo = wire.ehlo(Duration::from_secs(5)).await.unwrap().unwrap();
        let caps = Capabilities::from_ehlo(&ehlo);
        assert!(caps.has(smtp_proto::EXT_PIPELINING) && caps.has(smtp_proto::EXT_START_TLS));
        assert!(!caps.has(smtp_proto::EXT_SMTP_UTF8));
        assert_eq!(caps.size, 1000);
        server.write_all(b"502 5.5.1 no EHLO\r\n").await.unwrap();
        let refused = wire
            .ehlo(Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(refused.code, 502);
    }
}

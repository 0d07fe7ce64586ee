//! A line-protocol conversation over an in-memory stream, for SMTP and LMTP session tests:
//! send a line, expect the reply code (`t.cmd("RCPT TO:<x@y>", "550")`). The server side is
//! whatever session the test spawns on the other end of [`Transcript::pair`].

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};

/// How long a reply may take before the test fails (a session that hangs is a bug).
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Transcript {
    stream: BufReader<DuplexStream>,
    /// Every line sent and received, for assertion messages.
    pub log: Vec<String>,
}

impl Transcript {
    /// The client end and the server end of a fresh in-memory connection.
    pub fn pair() -> (Transcript, DuplexStream) {
        let (client, server) = tokio::io::duplex(1 << 20);
        (
            Transcript {
                stream: BufReader::new(client),
                log: Vec::new(),
            },
            server,
        )
    }

    /// Reads one complete reply (all its lines) and returns the last line.
    pub async fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(REPLY_TIMEOUT, self.stream.read_line(&mut line))
                .await
                .unwrap_or_else(|_| {
                    panic!("no reply within {REPLY_TIMEOUT:?}; so far: {:#?}", self.log)
                })
                .expect("reading a reply");
            assert!(n > 0, "connection closed; so far: {:#?}", self.log);
            let line = line.trim_end().to_string();
            self.log.push(format!("S: {line}"));
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return line;
            }
        }
    }

    /// Expects the next reply to start with `code` (e.g. `"220"` or `"250 2.1.5"`).
    pub async fn expect(&mut self, code: &str) -> String {
        let reply = self.reply().await;
        assert!(
            reply.starts_with(code),
            "expected {code}, got {reply:?}; transcript: {:#?}",
            self.log
        );
        reply
    }

    /// Sends raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.log
            .push(format!("C: {}", String::from_utf8_lossy(bytes).trim_end()));
        let stream = self.stream.get_mut();
        stream.write_all(bytes).await.expect("sending");
        stream.flush().await.expect("flushing");
    }

    /// Sends `line` with CRLF and expects a reply starting with `code`.
    pub async fn cmd(&mut self, line: &str, code: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.expect(code).await
    }

    /// Whether the server closed the connection (reads to the end, within the timeout).
    pub async fn closed(&mut self) -> bool {
        let mut rest = String::new();
        matches!(
            tokio::time::timeout(REPLY_TIMEOUT, self.stream.read_line(&mut rest)).await,
            Ok(Ok(0))
        )
    }
}

//! The spam filter hook: before the 250 of DATA/BDAT on the MX, the message goes to a filter
//! speaking Rspamd's HTTP protocol (`postbay filter` or a real Rspamd), whose action becomes
//! the SMTP reply, so a rejection is never a bounce. HTTP/1.0 with `Connection: close`, as
//! rspamc speaks it: the request and the reply parsing are pure functions; `scan` does I/O.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::proto::reply::Reply;

/// What to do when the filter cannot be asked (down, slow, or answering nonsense).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureMode {
    /// Accept the message unfiltered; logged and counted.
    Open,
    /// Answer 451 4.7.1, so the sender retries later.
    Closed,
}

#[derive(Debug, Clone)]
pub struct FilterSettings {
    /// `host:port` of the filter (a Service name in Kubernetes).
    pub address: String,
    /// `/checkv2` unless the URL names another path.
    pub path: String,
    pub timeout: Duration,
    pub failure: FailureMode,
}

impl FilterSettings {
    /// `http://host:port[/path]`.
    pub fn from_url(url: &str, timeout: Duration, failure: FailureMode) -> Option<Self> {
        let rest = url.strip_prefix("http://")?;
        let (address, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/checkv2"),
        };
        let path = if path == "/" { "/checkv2" } else { path };
        (!address.is_empty()).then(|| FilterSettings {
            address: address.to_string(),
            path: path.to_string(),
            timeout,
            failure,
        })
    }
}

/// Messages accepted unfiltered because the filter failed (fail-open), for metrics.
pub static FILTER_FAILURES: AtomicU64 = AtomicU64::new(0);

/// The SMTP facts the filter is told.
pub struct ScanEnvelope<'a> {
    pub ip: IpAddr,
    pub helo: &'a str,
    pub mail_from: &'a str,
    pub rcpts: Vec<&'a str>,
    pub queue_id: &'a str,
}

/// The parts of the filter's answer the MTA acts on.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FilterAnswer {
    pub action: String,
    pub smtp_message: Option<String>,
    pub add_headers: Vec<(String, String)>,
    pub remove_headers: Vec<String>,
    /// "rewrite subject": the new Subject (Rspamd's reply key `subject`), RFC 2047 encoded
    /// already by Rspamd and by `postbay filter`.
    pub subject: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("filter unreachable: {0}")]
    Io(#[from] std::io::Error),
    #[error("filter timed out")]
    Timeout,
    #[error("filter answered {0}")]
    Status(String),
    #[error("filter answer unreadable: {0}")]
    Parse(String),
}

/// Largest reply read from the filter.
const MAX_REPLY: usize = 1024 * 1024;

/// The HTTP request bytes for one scan; `traceparent` makes the filter's span a child of
/// the message's trace.
pub fn request(
    settings: &FilterSettings,
    env: &ScanEnvelope<'_>,
    traceparent: Option<&str>,
    message: &[u8],
) -> Vec<u8> {
    let clean = |v: &str| v.replace(['\r', '\n'], "");
    let mut head = format!(
        "POST {} HTTP/1.0\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\nIP: {}\r\nHelo: {}\r\nFrom: <{}>\r\nQueue-Id: {}\r\n",
        settings.path,
        settings.address,
        message.len(),
        env.ip,
        clean(env.helo),
        clean(env.mail_from),
        clean(env.queue_id),
    );
    for rcpt in &env.rcpts {
        head.push_str(&format!("Rcpt: <{}>\r\n", clean(rcpt)));
    }
    if let Some(tp) = traceparent.filter(|tp| postbay_telemetry::traces::valid_traceparent(tp)) {
        head.push_str(&format!("traceparent: {tp}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(message);
    out
}

/// Parses an HTTP/1.x reply carrying Rspamd's JSON.
pub fn parse_reply(raw: &[u8]) -> Result<FilterAnswer, FilterError> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| FilterError::Parse("no end of headers".into()))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head.lines().next().unwrap_or("");
    let code = status.split_whitespace().nth(1).unwrap_or("");
    if code != "200" {
        return Err(FilterError::Status(status.to_string()));
    }
    let json: serde_json::Value =
        serde_json::from_slice(&raw[split + 4..]).map_err(|e| FilterError::Parse(e.to_string()))?;
    let action = json
        .get("action")
        .and_then(|a| a.as_str())
        .ok_or_else(|| FilterError::Parse("no action".into()))?
        .to_string();
    let smtp_message = json
        .pointer("/messages/smtp_message")
        .and_then(|m| m.as_str())
        .map(str::to_string);
    let mut add = Vec::new();
    if let Some(map) = json
        .pointer("/milter/add_headers")
        .and_then(|m| m.as_object())
    {
        for (name, value) in map {
            // Rspamd sends a string, {value, order}, or a list of those.
            let values: Vec<&serde_json::Value> = match value {
                serde_json::Value::Array(list) => list.iter().collect(),
                other => vec![other],
            };
            for v in values {
                let text = v
                    .as_str()
                    .or_else(|| v.get("value").and_then(|x| x.as_str()));
                let order = v.get("order").and_then(|o| o.as_u64()).unwrap_or(0);
                if let Some(text) = text {
                    add.push((order, name.clone(), text.to_string()));
                }
            }
        }
    }
    add.sort_by_key(|(order, _, _)| *order);
    let remove_headers = json
        .pointer("/milter/remove_headers")
        .and_then(|m| m.as_object())
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let subject = json
        .get("subject")
        .and_then(|s| s.as_str())
        .map(str::to_string);
    Ok(FilterAnswer {
        action,
        smtp_message,
        add_headers: add.into_iter().map(|(_, n, v)| (n, v)).collect(),
        remove_headers,
        subject,
    })
}

/// Asks the filter about one message.
pub async fn ask(
    settings: &FilterSettings,
    env: &ScanEnvelope<'_>,
    message: &[u8],
) -> Result<FilterAnswer, FilterError> {
    let span = tracing::info_span!(target: postbay_telemetry::traces::TARGET, "filter.scan", otel.kind = "client", queue_id = env.queue_id);
    let traceparent = postbay_telemetry::traces::traceparent(&span);
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(&settings.address).await?;
        stream
            .write_all(&request(settings, env, traceparent.as_deref(), message))
            .await?;
        stream.flush().await?;
        let mut reply = Vec::new();
        (&mut stream)
            .take(MAX_REPLY as u64)
            .read_to_end(&mut reply)
            .await?;
        Ok::<_, FilterError>(reply)
    };
    let reply = tokio::time::timeout(
        settings.timeout,
        tracing::Instrument::instrument(exchange, span),
    )
    .await
    .map_err(|_| FilterError::Timeout)??;
    parse_reply(&reply)
}

/// The filter's say on a message: its new bytes to queue, or the SMTP refusal.
pub async fn decide(
    settings: &FilterSettings,
    env: &ScanEnvelope<'_>,
    message: Vec<u8>,
) -> Result<Vec<u8>, Reply> {
    let answer = match ask(settings, env, &message).await {
        Ok(answer) => answer,
        Err(error) => {
            return match settings.failure {
                FailureMode::Open => {
                    let failures = FILTER_FAILURES.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::warn!(%error, queue_id = env.queue_id, failures, "filter failed; accepting unfiltered (filter_failure = open)");
                    Ok(message)
                }
                FailureMode::Closed => {
                    tracing::warn!(%error, queue_id = env.queue_id, "filter failed; deferring (filter_failure = closed)");
                    Err(
                        Reply::new(451, "4.7.1", "Content filter unavailable, try again later")
                            .because("filter_unavailable"),
                    )
                }
            };
        }
    };
    let text = |default: &str| {
        answer
            .smtp_message
            .clone()
            .unwrap_or_else(|| default.to_string())
            .replace(['\r', '\n'], " ")
    };
    tracing::info!(
        queue_id = env.queue_id,
        action = answer.action,
        "filter verdict"
    );
    match answer.action.as_str() {
        "reject" => {
            Err(Reply::new(550, "5.7.1", text("Message rejected as spam")).because("filter_reject"))
        }
        "soft reject" | "greylist" => {
            Err(Reply::new(451, "4.7.1", text("Try again later")).because("filter_soft_reject"))
        }
        _ => Ok(apply(&message, &answer)),
    }
}

/// The accepted message as the filter wants it: its removals and additions, and for
/// "rewrite subject" the new Subject in place of the old, as the filter encoded it (one
/// line of ASCII whatever the filter sent).
pub fn apply(message: &[u8], answer: &FilterAnswer) -> Vec<u8> {
    let mut remove = answer.remove_headers.clone();
    let mut add = headers_to_add(answer);
    if let (Some(subject), "rewrite subject") = (&answer.subject, answer.action.as_str()) {
        remove.push("Subject".to_string());
        add.push(("Subject".to_string(), postbay_mime::header_value(subject)));
    }
    rewrite_headers(message, &remove, &add)
}

/// The filter's `milter.add_headers`, plus `X-Spam: Yes` for a spam verdict that carries none.
/// A real Rspamd leaves that header to the MTA: its /checkv2 reply adds one only when its
/// milter_headers module is set up to (Debian's default `use = []` does not, and a GTUBE
/// verdict skips the module), while its milter proxy adds `X-Spam: Yes` itself on "add
/// header" (`spam_header` in worker-proxy.inc). Without it the message would miss Junk.
pub fn headers_to_add(answer: &FilterAnswer) -> Vec<(String, String)> {
    let mut add = answer.add_headers.clone();
    let spam = matches!(answer.action.as_str(), "add header" | "rewrite subject");
    if spam
        && !add
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("X-Spam"))
    {
        add.push(("X-Spam".to_string(), "Yes".to_string()));
    }
    add
}

/// Removes every field named in `remove`, then prepends `add` in order.
pub fn rewrite_headers(message: &[u8], remove: &[String], add: &[(String, String)]) -> Vec<u8> {
    let header_end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message.len(), |i| i + 2);
    let mut out = Vec::with_capacity(message.len() + 512);
    for (name, value) in add {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let mut dropping = false;
    for line in message[..header_end].split_inclusive(|&b| b == b'\n') {
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continuation {
            let name = line.split(|&b| b == b':').next().unwrap_or(b"");
            dropping = remove
                .iter()
                .any(|r| r.as_bytes().eq_ignore_ascii_case(name.trim_ascii()));
        }
        if !dropping {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(&message[header_end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rspamd_replies() {
        let body = r#"{"action":"add header","score":7.5,"messages":{"smtp_message":"nope"},"milter":{"add_headers":{"X-Spam":{"value":"Yes","order":1},"Authentication-Results":{"value":"mx; spf=pass","order":0},"X-Other":"plain"},"remove_headers":{"Authentication-Results":0}}}"#;
        let raw = format!("HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{body}");
        let a = parse_reply(raw.as_bytes()).unwrap();
        assert_eq!(a.action, "add header");
        assert_eq!(a.smtp_message.as_deref(), Some("nope"));
        assert_eq!(a.add_headers[0].0, "Authentication-Results");
        assert!(a.add_headers.contains(&("X-Other".into(), "plain".into())));
        assert_eq!(a.remove_headers, vec!["Authentication-Results"]);
        assert!(parse_reply(b"HTTP/1.1 500 Oops\r\n\r\n{}").is_err());
        assert!(parse_reply(b"HTTP/1.1 200 OK\r\n\r\nnot json").is_err());
    }

    #[test]
    fn a_spam_verdict_without_x_spam_gets_one() {
        // Debian's Rspamd 3.4 on Rspamd's add-header GTUBE variant: no `milter` key at all.
        let body = r#"{"is_skipped":true,"score":6.0,"required_score":15.0,"action":"add header","symbols":{"GTUBE":{"name":"GTUBE","score":0.0,"metric_score":0.0}},"messages":{"smtp_message":"Gtube pattern"},"message-id":"y1@example.org","time_real":0.000297}"#;
        let raw = format!("HTTP/1.1 200 OK\r\nConnection: close\r\nServer: rspamd/3.4\r\nContent-Type: application/json\r\n\r\n{body}");
        let answer = parse_reply(raw.as_bytes()).unwrap();
        assert_eq!(
            headers_to_add(&answer),
            vec![("X-Spam".into(), "Yes".into())]
        );
        // postbay filter's own X-Spam is kept, not doubled; a clean verdict gets none.
        let ours = FilterAnswer {
            action: "add header".into(),
            add_headers: vec![
                ("X-Spam".into(), "Yes".into()),
                ("X-Spam-Score".into(), "7.50".into()),
            ],
            ..Default::default()
        };
        assert_eq!(headers_to_add(&ours), ours.add_headers);
        let clean = FilterAnswer {
            action: "no action".into(),
            remove_headers: vec!["X-Spam".into()],
            ..Default::default()
        };
        assert!(headers_to_add(&clean).is_empty());
    }

    #[test]
    fn a_rewrite_subject_verdict_replaces_the_subject() {
        // Debian's Rspamd 3.4 on its rewrite-subject GTUBE variant (ZJS*...).
        let encoded = "=?UTF-8?Q?=2A=2A=2A_SPAM_=2A=2A=2A_Gr=C3=BC=C3=9Fe?=";
        let body = format!(
            r#"{{"is_skipped":true,"score":0.0,"required_score":15.0,"action":"rewrite subject","subject":"{encoded}","symbols":{{}},"messages":{{"smtp_message":"Gtube pattern"}}}}"#
        );
        let raw = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{body}");
        let answer = parse_reply(raw.as_bytes()).unwrap();
        assert_eq!(answer.subject.as_deref(), Some(encoded));
        let msg = b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n (folded)\r\nFrom: a@b\r\n\r\nbody\r\n";
        let out = String::from_utf8(apply(msg, &answer)).unwrap();
        assert_eq!(
            out,
            format!("X-Spam: Yes\r\nSubject: {encoded}\r\nFrom: a@b\r\n\r\nbody\r\n")
        );
        // A filter that sends raw UTF-8 or a line break still gets one ASCII field.
        let raw_utf8 = FilterAnswer {
            subject: Some("*** SPAM *** Grüße\r\nBcc: x@example.test".into()),
            ..answer.clone()
        };
        let out = String::from_utf8(apply(msg, &raw_utf8)).unwrap();
        assert!(out.is_ascii() && !out.contains("\r\nBcc:"), "{out}");
        // The subject key means nothing with other actions.
        let other = FilterAnswer {
            action: "add header".into(),
            ..answer
        };
        assert!(String::from_utf8(apply(msg, &other))
            .unwrap()
            .contains("(folded)"));
    }

    #[test]
    fn rewrites_headers() {
        let msg = b"Authentication-Results: mx; spf=pass\r\n (folded)\r\nFrom: a@b\r\n\r\nbody\r\n";
        let out = rewrite_headers(
            msg,
            &["authentication-results".into()],
            &[("X-Spam".into(), "Yes".into())],
        );
        assert_eq!(out, b"X-Spam: Yes\r\nFrom: a@b\r\n\r\nbody\r\n");
    }

    #[test]
    fn urls_and_requests() {
        let s = FilterSettings::from_url(
            "http://127.0.0.1:11333",
            Duration::from_secs(1),
            FailureMode::Open,
        )
        .unwrap();
        assert_eq!(
            (s.address.as_str(), s.path.as_str()),
            ("127.0.0.1:11333", "/checkv2")
        );
        assert!(FilterSettings::from_url("ftp://x", Duration::ZERO, FailureMode::Open).is_none());
        let env = ScanEnvelope {
            ip: "192.0.2.1".parse().unwrap(),
            helo: "h",
            mail_from: "a@b",
            rcpts: vec!["c@d", "e@f"],
            queue_id: "Q",
        };
        let req = String::from_utf8(request(&s, &env, None, b"x")).unwrap();
        assert!(req.starts_with("POST /checkv2 HTTP/1.0\r\n"));
        assert!(req.contains("Rcpt: <c@d>\r\nRcpt: <e@f>\r\n\r\nx"));
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let traced = String::from_utf8(request(&s, &env, Some(tp), b"x")).unwrap();
        assert!(traced.contains(&format!("\r\ntraceparent: {tp}\r\n\r\nx")));
        let forged = String::from_utf8(request(&s, &env, Some("x\r\nEvil: 1"), b"x")).unwrap();
        assert!(
            !forged.contains("Evil"),
            "an invalid traceparent is not passed on"
        );
        assert!(req.contains("Content-Length: 1\r\n"));
    }
}

//! The queue runner against a scripted fake LMTP target on 127.0.0.1: a temporary failure is
//! retried on the schedule (shortened through `RunnerSettings::backoff`), the retry carries
//! the same TRANSID, a recipient that got its final answer is not delivered again, and the
//! queue file goes once every recipient is done.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postbay_smtp::lmtp::client::LmtpClient;
use postbay_smtp::queue::runner::{Runner, RunnerSettings};
use postbay_smtp::queue::{Envelope, Queue, QueuedRecipient};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// What the fake target saw: one entry per DATA, with the MAIL line and the recipients.
#[derive(Debug, Clone)]
struct Seen {
    mail: String,
    rcpts: Vec<String>,
    at: Instant,
}

/// Answers every recipient of the first `fail_first` transactions with 451 except
/// `always_ok`, which is accepted at once; everything after that is accepted.
async fn fake_lmtp(fail_first: usize, always_ok: &'static str) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read);
                write.write_all(b"220 fake LMTP\r\n").await.ok();
                let (mut mail, mut rcpts) = (String::new(), Vec::new());
                loop {
                    let mut line = String::new();
                    if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let upper = line.to_ascii_uppercase();
                    let reply: String = if upper.starts_with("LHLO") {
                        "250-fake\r\n250 PIPELINING\r\n".into()
                    } else if upper.starts_with("MAIL") {
                        mail = line.trim_end().to_string();
                        rcpts.clear();
                        "250 2.1.0 ok\r\n".into()
                    } else if upper.starts_with("RCPT") {
                        rcpts.push(
                            line.trim_end()[9..]
                                .trim_matches(|c| c == '<' || c == '>')
                                .to_string(),
                        );
                        "250 2.1.5 ok\r\n".into()
                    } else if upper.starts_with("DATA") {
                        write.write_all(b"354 go\r\n").await.ok();
                        loop {
                            let mut body = String::new();
                            if lines.read_line(&mut body).await.unwrap_or(0) == 0 || body == ".\r\n"
                            {
                                break;
                            }
                        }
                        let attempt = {
                            let mut seen = log.lock().expect("log");
                            seen.push(Seen {
                                mail: mail.clone(),
                                rcpts: rcpts.clone(),
                                at: Instant::now(),
                            });
                            seen.len()
                        };
                        rcpts
                            .iter()
                            .map(|r| {
                                if attempt <= fail_first && r != always_ok {
                                    "451 4.3.0 try again later\r\n"
                                } else {
                                    "250 2.0.0 stored\r\n"
                                }
                            })
                            .collect()
                    } else if upper.starts_with("QUIT") {
                        write.write_all(b"221 bye\r\n").await.ok();
                        return;
                    } else {
                        "250 ok\r\n".into()
                    };
                    if write.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

fn recipient(address: &str) -> QueuedRecipient {
    QueuedRecipient {
        address: address.into(),
        original: address.into(),
        local: true,
        ..QueuedRecipient::default()
    }
}

#[tokio::test]
async fn temporary_failures_are_retried_on_schedule_and_finished_recipients_are_not_resent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store = postbay_store::Store::open(
        &format!(
            "sqlite://{}?mode=rwc",
            store_dir.path().join("db").display()
        ),
        &store_dir.path().join("mail"),
    )
    .await
    .expect("store");
    let (addr, seen) = fake_lmtp(2, "done@example.test").await;
    let (queue, wake) = Queue::open(dir.path(), "node-test").expect("queue");
    let backoff = vec![Duration::from_millis(300), Duration::from_millis(600)];
    let runner = Runner::new(
        queue.clone(),
        Arc::new(LmtpClient::new(addr, "mx.example.test".into())),
        None,
        store,
        "mx.example.test".into(),
        RunnerSettings {
            concurrency: 4,
            scan_interval: Duration::from_millis(50),
            backoff: backoff.clone(),
            ..RunnerSettings::default()
        },
    );
    tokio::spawn(runner.run(wake));

    let id = Queue::new_id();
    let envelope = Envelope {
        id: id.clone(),
        mail_from: "sender@remote.test".into(),
        recipients: vec![
            recipient("done@example.test"),
            recipient("later@example.test"),
        ],
        received_at: postbay_store::now_unix(),
        client_ip: "192.0.2.1".into(),
        helo: "client.test".into(),
        smtputf8: false,
        eight_bit: false,
        attempts: 0,
        next_attempt: 0,
        trace: None,
        ret: None,
        envid: None,
        warned: false,
    };
    queue
        .enqueue(
            &envelope,
            b"Received: test\r\n".to_vec(),
            b"Subject: q\r\n\r\nbody\r\n".to_vec(),
        )
        .await
        .expect("enqueue");

    let deadline = Instant::now() + Duration::from_secs(20);
    while queue.path_of(&id).exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !queue.path_of(&id).exists(),
        "the message is still queued: {:?}",
        seen.lock().expect("log")
    );
    let seen = seen.lock().expect("log").clone();
    assert_eq!(seen.len(), 3, "one attempt and two retries: {seen:?}");
    // Every attempt carries the queue id as TRANSID, so the mailbox can recognise a retry.
    for s in &seen {
        assert!(
            s.mail.contains(&format!("TRANSID=<{id}@postbay>")),
            "{}",
            s.mail
        );
    }
    // The recipient that was stored at the first attempt is never sent again.
    assert_eq!(seen[0].rcpts, ["done@example.test", "later@example.test"]);
    assert_eq!(seen[1].rcpts, ["later@example.test"]);
    assert_eq!(seen[2].rcpts, ["later@example.test"]);
    // The retries waited (at least) the schedule's delays, in order.
    assert!(
        seen[1].at - seen[0].at >= backoff[0],
        "{:?}",
        seen[1].at - seen[0].at
    );
    assert!(
        seen[2].at - seen[1].at >= backoff[1],
        "{:?}",
        seen[2].at - seen[1].at
    );
}

/// A write in flight (`.tmp-<id>.msg`) is not a queued message: the runner once delivered
/// such a half-written copy as a second, concurrent attempt of the message being rewritten.
#[tokio::test]
async fn a_scan_never_returns_a_write_in_flight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, _wake) = Queue::open(dir.path(), "node-test").expect("queue");
    let id = Queue::new_id();
    std::fs::write(queue.dir().join(format!(".tmp-{id}.msg")), b"{}\n").expect("tmp");
    std::fs::write(queue.path_of(&id), b"{}\n").expect("msg");
    assert_eq!(queue.scan().await.expect("scan"), vec![id]);
}

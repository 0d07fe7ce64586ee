//! Feeds arbitrary bytes into a whole IMAP session (framing, literals, extension pre-parse,
//! imap-codec parsing, dispatch, store) over an in-memory stream. The account
//! alice@example.test / secret exists, so inputs that log in reach the selected state.
//! Oracle: no panic, no hang (the session must end once the input is exhausted), and the
//! server always greets first.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use postbay_imap::{ImapContext, ImapLimits};

struct World {
    rt: tokio::runtime::Runtime,
    ctx: Arc<ImapContext>,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ctx = rt.block_on(async {
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("db").display());
            let store = postbay_store::Store::open(&url, &dir.path().join("mail"))
                .await
                .unwrap();
            store
                .put_domain(&postbay_store::DomainRow {
                    name: "example.test".into(),
                    catch_all: None,
                    enabled: true,
                    owner: None,
                })
                .await
                .unwrap();
            store
                .put_mailbox(&postbay_store::directory::MailboxSpec {
                    address: "alice@example.test".into(),
                    password_hash: "{PLAIN}secret".into(),
                    quota_bytes: 1 << 20,
                    enabled: true,
                    owner: None,
                })
                .await
                .unwrap();
            let limits = ImapLimits {
                allow_plaintext_auth: true,
                failed_login_delay: Duration::ZERO,
                max_literal_size: 256 * 1024,
                max_failures_per_ip: u32::MAX,
                max_failures_per_user: u32::MAX,
                ..ImapLimits::default()
            };
            Arc::new(ImapContext::new(store, "fuzz.example.test", limits))
        });
        World { rt, ctx, _dir: dir }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let out = w.rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(20),
            postbay_imap::fuzzing::run_session(w.ctx.clone(), data),
        )
        .await
        .expect("session ended after the input was exhausted")
    });
    assert!(out.starts_with(b"* OK "), "no greeting");
});

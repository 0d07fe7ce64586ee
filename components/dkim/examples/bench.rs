//! Time per signature for 4 KiB messages, RSA-2048 and Ed25519, through `Signer::sign`
//! exactly as the submission path calls it (row cache, key file check, blocking pool).
//!
//! `cargo run --release -p postbay-dkim --example bench -- [N]` (N defaults to 2000).

use std::time::Instant;

use postbay_api::{DkimAlgorithm, DkimKeySpec};
use postbay_dkim::{KeySource, Signer};
use postbay_reconcile::key_files::KeyFiles;
use postbay_reconcile::Owner;
use postbay_store::{DomainRow, Store};

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("N must be a number"))
        .unwrap_or(2000);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    let store = Store::open(&url, &dir.path().join("mail"))
        .await
        .expect("opening the store");
    let files = KeyFiles::new(dir.path());
    for (domain, algorithm) in [
        ("rsa.example", DkimAlgorithm::RsaSha256),
        ("ed.example", DkimAlgorithm::Ed25519Sha256),
    ] {
        store
            .put_domain(&DomainRow {
                name: domain.into(),
                catch_all: None,
                enabled: true,
                owner: None,
            })
            .await
            .expect("writing the domain");
        let spec = DkimKeySpec {
            domain: domain.into(),
            selector: "bench".into(),
            algorithm,
            secret_ref: None,
        };
        let (material, _) = files.material(&spec, None).expect("making a key");
        postbay_reconcile::dkim::apply(&store, &Owner::new("bench", "bench"), &spec, &material)
            .await
            .expect("writing the key row");
    }
    let signer = Signer::new(store, KeySource::default());
    for (domain, label) in [("rsa.example", "rsa-2048"), ("ed.example", "ed25519")] {
        let message = message(domain);
        // Warm-up: loads and caches the key.
        let first = signer.sign(domain, &message).await.expect("signing");
        assert_eq!(first.signatures.len(), 1, "{first:?}");
        let start = Instant::now();
        for _ in 0..n {
            let signed = signer.sign(domain, &message).await.expect("signing");
            assert!(!signed.header.is_empty());
        }
        let micros = start.elapsed().as_secs_f64() * 1e6 / n as f64;
        println!(
            "{label}: {micros:.1} µs per signature ({n} messages of {} bytes)",
            message.len()
        );
    }
}

/// A 4 KiB plain-text message.
fn message(domain: &str) -> Vec<u8> {
    let mut out = format!(
        "From: bench@{domain}\r\nTo: someone@example.org\r\nSubject: bench\r\n\
         Date: Mon, 2 Mar 2026 10:00:00 +0100\r\nMessage-ID: <bench@{domain}>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    .into_bytes();
    let line = b"The quick brown fox jumps over the lazy dog, again and again.\r\n";
    while out.len() + line.len() <= 4096 {
        out.extend_from_slice(line);
    }
    out.resize(4094, b'.');
    out.extend_from_slice(b"\r\n");
    out
}

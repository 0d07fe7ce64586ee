//! Dovecot itself must accept what we write: `doveadm pw -t HASH -p PASSWORD`.
//!
//! Skipped with a note on stderr when doveadm is not installed, unless POSTBAY_REQUIRE_PEERS=1,
//! in which case its absence fails the test (CI sets it, having installed dovecot-core).

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use postbay_passwd::scram::ScramCredential;
use postbay_passwd::{hash, hash_with, verify, Params, Scheme};

fn doveadm() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("doveadm"))
        .find(|candidate| candidate.is_file())
}

/// Runs `doveadm pw -t`; true when Dovecot reports the password verified.
fn doveadm_verifies(doveadm: &PathBuf, stored: &str, password: &str) -> bool {
    let output = Command::new(doveadm)
        .args(["pw", "-t", stored, "-p", password])
        .output()
        .expect("doveadm runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    output.status.success() && stdout.contains("(verified)")
}

/// doveadm, or `None` after printing SKIP; a panic instead when POSTBAY_REQUIRE_PEERS=1.
fn require_doveadm() -> Option<PathBuf> {
    let found = doveadm();
    if found.is_none() {
        if std::env::var("POSTBAY_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!(
                "doveadm not installed but POSTBAY_REQUIRE_PEERS=1: \
                 install dovecot-core to check Dovecot compatibility"
            );
        }
        // Straight to the stream: the test harness would swallow `eprintln!` of a passing test.
        let _ = writeln!(std::io::stderr(), "SKIP: doveadm not installed");
    }
    found
}

/// `doveadm pw -s SCHEME -p PASSWORD`, the stored value it prints.
fn doveadm_hash(doveadm: &PathBuf, scheme: &str, password: &str) -> String {
    let output = Command::new(doveadm)
        .args(["pw", "-s", scheme, "-p", password])
        .output()
        .expect("doveadm runs");
    assert!(
        output.status.success(),
        "doveadm pw -s {scheme} failed: {output:?}"
    );
    String::from_utf8(output.stdout)
        .expect("doveadm prints UTF-8")
        .trim_end()
        .to_string()
}

#[test]
fn doveadm_accepts_our_hashes() {
    let Some(doveadm) = require_doveadm() else {
        return;
    };
    for scheme in Scheme::ALL {
        let stored = hash(b"secret", scheme).unwrap();
        assert!(
            doveadm_verifies(&doveadm, &stored, "secret"),
            "doveadm rejected our {scheme} hash {stored}"
        );
        assert!(
            !doveadm_verifies(&doveadm, &stored, "wrong"),
            "doveadm accepted a wrong password for our {scheme} hash {stored}"
        );
    }
}

/// Passwords for the SCRAM checks: ASCII, UTF-8 with spaces, one with SCRAM's separators.
const SCRAM_PASSWORDS: [&str; 3] = ["secret", "pässwörd with spaces", "a,b=c"];

#[test]
fn doveadm_scram_credentials_verify_here() {
    let Some(doveadm) = require_doveadm() else {
        return;
    };
    for password in SCRAM_PASSWORDS {
        let stored = doveadm_hash(&doveadm, "SCRAM-SHA-256", password);
        let credential = ScramCredential::parse(&stored).unwrap();
        assert_eq!(credential.to_string(), stored, "format round trip");
        assert!(credential.verify_password(password.as_bytes()), "{stored}");
        assert!(!credential.verify_password(b"wrong"), "{stored}");
        assert_eq!(verify(password.as_bytes(), &stored), Ok(true), "{stored}");
    }
}

#[test]
fn doveadm_accepts_our_scram_credentials() {
    let Some(doveadm) = require_doveadm() else {
        return;
    };
    for iterations in [4096, 10_000] {
        let params = Params {
            scram_iterations: iterations,
            ..Params::default()
        };
        for password in SCRAM_PASSWORDS {
            let stored = hash_with(password.as_bytes(), Scheme::ScramSha256, &params).unwrap();
            assert!(
                stored.starts_with(&format!("{{SCRAM-SHA-256}}{iterations},")),
                "{stored}"
            );
            assert!(
                doveadm_verifies(&doveadm, &stored, password),
                "doveadm rejected our {stored} for {password:?}"
            );
            assert!(
                !doveadm_verifies(&doveadm, &stored, "wrong"),
                "doveadm accepted a wrong password for {stored}"
            );
        }
    }
}

//! Dovecot itself must accept what we write: `doveadm pw -t HASH -p PASSWORD`.
//!
//! Skipped with a note on stderr when doveadm is not installed, unless POSTBAY_REQUIRE_PEERS=1,
//! in which case its absence fails the test (CI sets it, having installed dovecot-core).

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use postbay_passwd::{hash, Scheme};

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

#[test]
fn doveadm_accepts_our_hashes() {
    let Some(doveadm) = doveadm() else {
        if std::env::var("POSTBAY_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!(
                "doveadm not installed but POSTBAY_REQUIRE_PEERS=1: \
                 install dovecot-core to check Dovecot compatibility"
            );
        }
        // Straight to the stream: the test harness would swallow `eprintln!` of a passing test.
        let _ = writeln!(std::io::stderr(), "SKIP: doveadm not installed");
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

//! Everything a SCRAM client controls: the client-first and client-final messages fed to the
//! server state machine, and (the same bytes) a stored `{SCRAM-SHA-256}` row.
//!
//! Input: one byte choosing a known or an unknown user, then client-first, then `\n`, then
//! client-final. Oracles: no panic; the server-first extends the client's nonce; an exchange
//! with a made-up credential never succeeds; a parsed credential formats back to itself.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use postbay_passwd::scram::{ClientFirst, ScramCredential, UnknownUserKey};

fn credential() -> &'static ScramCredential {
    static CREDENTIAL: OnceLock<ScramCredential> = OnceLock::new();
    CREDENTIAL.get_or_init(|| ScramCredential::derive_with_salt(b"pencil", b"salt", 4096).unwrap())
}

fn key() -> &'static UnknownUserKey {
    static KEY: OnceLock<UnknownUserKey> = OnceLock::new();
    KEY.get_or_init(|| UnknownUserKey::from_secret(b"fuzz"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (first, last) = match rest.iter().position(|&b| b == b'\n') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };

    if let Ok(text) = std::str::from_utf8(rest) {
        // Parsing only: verify_password would spend 4096 HMAC rounds per input.
        if let Ok(parsed) = ScramCredential::parse(text) {
            let again = ScramCredential::parse(&parsed.to_string()).expect("own output parses");
            assert_eq!(again, parsed);
        }
    }

    let Ok(client_first) = ClientFirst::parse(first) else {
        return;
    };
    let known = selector & 1 == 1;
    let username = client_first.username().to_string();
    let (server, server_first) = client_first
        .respond_with_nonce(known.then(credential), key(), "fuzzServerNonce")
        .expect("a fixed printable nonce is accepted");
    assert!(server_first.starts_with("r="), "{server_first}");
    assert!(
        server_first.contains("fuzzServerNonce,s="),
        "{server_first}"
    );
    assert_eq!(server.username(), username);
    match server.finish(last) {
        Ok(done) => {
            assert!(known, "made-up credential authenticated {username:?}");
            assert!(done.message().starts_with("v="));
        }
        Err(e) => {
            let _ = e.server_error_value();
        }
    }
});

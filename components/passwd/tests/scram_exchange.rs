//! The SCRAM-SHA-256 server against the RFC 7677 section 3 example and tables of good and bad
//! client messages. Client proofs are computed here from the RFC 5802 section 3 formulas with
//! sha2/hmac directly, not with the crate's own helpers.

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use postbay_passwd::scram::{ClientFirst, ScramCredential, ScramError, UnknownUserKey};
use sha2::{Digest, Sha256};

// RFC 7677 section 3.
const RFC_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
const RFC_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const RFC_SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const RFC_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

/// The RFC's credential: password "pencil" with its salt (4096 rounds, derived once).
fn pencil() -> &'static ScramCredential {
    static CREDENTIAL: OnceLock<ScramCredential> = OnceLock::new();
    CREDENTIAL.get_or_init(|| {
        ScramCredential::derive_with_salt(b"pencil", &B64.decode(RFC_SALT).unwrap(), 4096).unwrap()
    })
}

fn key() -> UnknownUserKey {
    UnknownUserKey::from_secret(b"test secret")
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// PBKDF2-HMAC-SHA-256, one block: the client's side of Hi().
fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut u = hmac(password, &[salt, &1u32.to_be_bytes()].concat());
    let mut out = u.clone();
    for _ in 1..iterations {
        u = hmac(password, &u);
        out.iter_mut().zip(&u).for_each(|(o, x)| *o ^= x);
    }
    out
}

/// A client-final message for `server_first`, as a correct client would compute it.
fn client_final(
    password: &[u8],
    client_first_bare: &str,
    server_first: &str,
    without_proof: &str,
) -> String {
    let fields: Vec<&str> = server_first.split(',').collect();
    let salt = B64.decode(&fields[1][2..]).unwrap();
    let iterations: u32 = fields[2][2..].parse().unwrap();
    let salted = salted_password(password, &salt, iterations);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(&client_key);
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let signature = hmac(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(k, s)| k ^ s)
        .collect();
    format!("{without_proof},p={}", B64.encode(proof))
}

#[test]
fn reproduces_the_rfc_7677_example() {
    let first = ClientFirst::parse(RFC_CLIENT_FIRST.as_bytes()).unwrap();
    assert_eq!(first.username(), "user");
    let (server, server_first) = first
        .respond_with_nonce(Some(pencil()), &key(), RFC_SERVER_NONCE)
        .unwrap();
    assert_eq!(server_first, RFC_SERVER_FIRST);
    let done = server.finish(RFC_CLIENT_FINAL.as_bytes()).unwrap();
    assert_eq!(done.message(), RFC_SERVER_FINAL);
    assert_eq!(done.username(), "user");
}

#[test]
fn our_test_client_agrees_with_the_rfc() {
    // Guards the helper the other tests rely on.
    let cf = client_final(
        b"pencil",
        "n=user,r=rOprNGfwEbeRWgbNEkqO",
        RFC_SERVER_FIRST,
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    );
    assert_eq!(cf, RFC_CLIENT_FINAL);
}

/// Runs a whole exchange; `final_without_proof` gets `{nonce}` replaced by the server's.
fn exchange(
    client_first: &str,
    credential: Option<&ScramCredential>,
    password: &[u8],
    final_without_proof: &str,
) -> Result<String, ScramError> {
    let first = ClientFirst::parse(client_first.as_bytes())?;
    let (server, server_first) = first.respond(credential, &key());
    let nonce = server_first.split(',').next().unwrap()[2..].to_string();
    let bare = client_first.splitn(3, ',').nth(2).unwrap();
    let without_proof = final_without_proof.replace("{nonce}", &nonce);
    let message = client_final(password, bare, &server_first, &without_proof);
    server
        .finish(message.as_bytes())
        .map(|done| done.message().to_string())
}

#[test]
fn good_exchanges_succeed() {
    // (client-first, client-final-without-proof)
    let table = [
        ("n,,n=user,r=abc", "c=biws,r={nonce}"),
        ("y,,n=user,r=abc", "c=eSws,r={nonce}"),
        // authzid equal to the user: c= carries the whole gs2 header.
        ("n,a=user,n=user,r=abc", "c=bixhPXVzZXIs,r={nonce}"),
        // Unknown extensions are ignored, in either message.
        ("n,,n=user,r=abc,x=1", "c=biws,r={nonce},y=2"),
        ("n,,n=user,r=!\"#$%&'()*+-./~", "c=biws,r={nonce}"),
    ];
    for (first, last) in table {
        let result = exchange(first, Some(pencil()), b"pencil", last);
        assert!(
            result.as_deref().is_ok_and(|m| m.starts_with("v=")),
            "{first} / {last}: {result:?}"
        );
    }
}

#[test]
fn escaped_usernames_are_decoded() {
    let first = ClientFirst::parse(b"n,a=a=2Cb=3Dc,n=a=2cb=3dc,r=x").unwrap();
    assert_eq!(first.username(), "a,b=c");
}

/// Which error a bad message must produce.
type Expect = fn(&ScramError) -> bool;

#[test]
fn bad_client_first_messages_are_refused() {
    use ScramError as E;
    let long_name = format!("n,,n={},r=abc", "u".repeat(256));
    let long_nonce = format!("n,,n=user,r={}", "r".repeat(257));
    let too_long = format!("n,,n=user,r=abc,x={}", "x".repeat(2048));
    let table: Vec<(&[u8], Expect)> = vec![
        (b"", |e| matches!(e, E::InvalidEncoding(_))),
        (b"n", |e| matches!(e, E::InvalidEncoding(_))),
        (b"n,", |e| matches!(e, E::InvalidEncoding(_))),
        (b"n,,", |e| matches!(e, E::InvalidEncoding(_))),
        (b"x,,n=user,r=abc", |e| matches!(e, E::InvalidEncoding(_))),
        (b"N,,n=user,r=abc", |e| matches!(e, E::InvalidEncoding(_))),
        (b"p=tls-unique,,n=user,r=abc", |e| {
            *e == E::ChannelBindingNotSupported
        }),
        (b"p=tls-server-end-point,,n=user,r=abc", |e| {
            *e == E::ChannelBindingNotSupported
        }),
        (b"n,b=user,n=user,r=abc", |e| {
            matches!(e, E::InvalidEncoding(_))
        }),
        (b"n,a=admin,n=user,r=abc", |e| *e == E::AuthzidNotAllowed),
        (b"n,a=,n=user,r=abc", |e| {
            matches!(e, E::InvalidUsernameEncoding(_))
        }),
        (b"n,,m=ext,n=user,r=abc", |e| {
            *e == E::ExtensionsNotSupported
        }),
        (b"n,,n=user,r=abc,m=ext", |e| {
            *e == E::ExtensionsNotSupported
        }),
        (b"n,,r=abc,n=user", |e| matches!(e, E::InvalidEncoding(_))),
        (b"n,,n=user", |e| matches!(e, E::InvalidEncoding(_))),
        (b"n,,n=user,", |e| matches!(e, E::InvalidEncoding(_))),
        (b"n,,n=user,r=", |e| matches!(e, E::InvalidEncoding(_))),
        (b"n,,n=user,r=a b", |e| matches!(e, E::InvalidEncoding(_))),
        (b"n,,n=user,r=\xc3\xa9", |e| {
            matches!(e, E::InvalidEncoding(_))
        }),
        (b"n,,n=,r=abc", |e| {
            matches!(e, E::InvalidUsernameEncoding(_))
        }),
        (b"n,,n=us=er,r=abc", |e| {
            matches!(e, E::InvalidUsernameEncoding(_))
        }),
        (b"n,,n=user=,r=abc", |e| {
            matches!(e, E::InvalidUsernameEncoding(_))
        }),
        (b"n,,n=user=2,r=abc", |e| {
            matches!(e, E::InvalidUsernameEncoding(_))
        }),
        (b"n,,n=u\0ser,r=abc", |e| matches!(e, E::InvalidEncoding(_))),
        (b"n,,n=\xff,r=abc", |e| matches!(e, E::InvalidEncoding(_))),
        (b"n,,n=user,r=abc,", |e| matches!(e, E::InvalidEncoding(_))),
        (b"n,,n=user,r=abc,1=x", |e| {
            matches!(e, E::InvalidEncoding(_))
        }),
        (b"n,,n=user,r=abc,x=", |e| {
            matches!(e, E::InvalidEncoding(_))
        }),
        (b"n,,n=user,r=abc,xy=1", |e| {
            matches!(e, E::InvalidEncoding(_))
        }),
        (long_name.as_bytes(), |e| {
            matches!(e, E::InvalidUsernameEncoding(_))
        }),
        (long_nonce.as_bytes(), |e| {
            matches!(e, E::InvalidEncoding(_))
        }),
        (too_long.as_bytes(), |e| *e == E::TooLong { limit: 2048 }),
    ];
    for (input, expected) in table {
        let result = ClientFirst::parse(input);
        match result {
            Err(e) if expected(&e) => {}
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }
}

#[test]
fn bad_client_final_messages_are_refused() {
    use ScramError as E;
    let first = || ClientFirst::parse(RFC_CLIENT_FIRST.as_bytes()).unwrap();
    let nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    let proof = "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    let wrong_proof = "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVU=";
    let table: Vec<(String, ScramError)> = vec![
        (String::new(), E::InvalidEncoding("no proof")),
        (
            format!("c=biws,r={nonce}"),
            E::InvalidEncoding("expected p=proof last"),
        ),
        ("c=biws".to_string(), E::InvalidEncoding("no proof")),
        (
            format!("c=biws,r={nonce},x=1"),
            E::InvalidEncoding("expected p=proof last"),
        ),
        (
            format!("r={nonce},c=biws,{proof}"),
            E::InvalidEncoding("expected c=channel-binding"),
        ),
        (
            format!("c=biws,{proof}"),
            E::InvalidEncoding("expected r=nonce"),
        ),
        (
            format!("c=bi*s,r={nonce},{proof}"),
            E::InvalidEncoding("channel binding is not base64"),
        ),
        // "y,," although the client said "n,,".
        (
            format!("c=eSws,r={nonce},{proof}"),
            E::ChannelBindingMismatch,
        ),
        (format!("c=,r={nonce},{proof}"), E::ChannelBindingMismatch),
        (format!("c=biws,r={nonce}X,{proof}"), E::NonceMismatch),
        (
            format!("c=biws,r=rOprNGfwEbeRWgbNEkqO,{proof}"),
            E::NonceMismatch,
        ),
        (
            format!("c=biws,r={nonce},p=AAAA"),
            E::InvalidEncoding("proof is not 32 bytes"),
        ),
        (
            format!("c=biws,r={nonce},p=!!"),
            E::InvalidEncoding("proof is not base64"),
        ),
        (
            format!("c=biws,r={nonce},m=x,{proof}"),
            E::ExtensionsNotSupported,
        ),
        (format!("c=biws,r={nonce},{wrong_proof}"), E::InvalidProof),
        (
            format!("c=biws,r={nonce},{proof}{}", "A".repeat(2048)),
            E::TooLong { limit: 2048 },
        ),
    ];
    for (input, want) in table {
        let (server, _) = first()
            .respond_with_nonce(Some(pencil()), &key(), RFC_SERVER_NONCE)
            .unwrap();
        assert_eq!(
            server.finish(input.as_bytes()).unwrap_err(),
            want,
            "{input}"
        );
    }
}

#[test]
fn wrong_password_fails_at_the_proof() {
    let result = exchange(
        "n,,n=user,r=abc",
        Some(pencil()),
        b"pencils",
        "c=biws,r={nonce}",
    );
    assert_eq!(result, Err(ScramError::InvalidProof));
}

#[test]
fn unknown_users_get_a_stable_plausible_challenge_and_fail() {
    let respond = |client_first: &str, key: &UnknownUserKey| {
        let first = ClientFirst::parse(client_first.as_bytes()).unwrap();
        first.respond_with_nonce(None, key, "srv").unwrap()
    };
    let (_, server_first) = respond("n,,n=ghost,r=abc", &key());
    let fields: Vec<&str> = server_first.split(',').collect();
    assert_eq!(fields[0], "r=abcsrv");
    assert_eq!(
        B64.decode(&fields[1][2..]).unwrap().len(),
        16,
        "{server_first}"
    );
    assert_eq!(fields[2], "i=4096");
    // The same name gets the same salt, another name or another key a different one.
    assert_eq!(
        respond("n,,n=ghost,r=xyz", &key()).1,
        "r=xyzsrv,".to_string() + &fields[1..].join(",")
    );
    assert_ne!(respond("n,,n=ghost2,r=abc", &key()).1, server_first);
    assert_ne!(
        respond("n,,n=ghost,r=abc", &UnknownUserKey::from_secret(b"other")).1,
        server_first
    );

    // Whatever password the client tries, it fails like a wrong password.
    for password in [&b"pencil"[..], b"", b"ghost"] {
        let bare = "n=ghost,r=abc";
        let message = client_final(password, bare, &server_first, "c=biws,r=abcsrv");
        let (server, _) = respond("n,,n=ghost,r=abc", &key());
        assert_eq!(
            server.finish(message.as_bytes()),
            Err(ScramError::InvalidProof)
        );
    }
}

#[test]
fn server_nonce_must_be_printable() {
    for bad in ["", "a,b", "a b", "é"] {
        let first = ClientFirst::parse(RFC_CLIENT_FIRST.as_bytes()).unwrap();
        assert!(
            matches!(
                first.respond_with_nonce(Some(pencil()), &key(), bad),
                Err(ScramError::InvalidServerNonce { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn random_server_nonces_differ_and_extend_the_client_nonce() {
    let nonce = |_| {
        let first = ClientFirst::parse(b"n,,n=user,r=abc").unwrap();
        let (_, server_first) = first.respond(Some(pencil()), &key());
        server_first.split(',').next().unwrap().to_string()
    };
    let a = nonce(0);
    let b = nonce(1);
    assert!(
        a.starts_with("r=abc") && a.len() >= "r=abc".len() + 32,
        "{a}"
    );
    assert_ne!(a, b);
}

#[test]
fn error_values_follow_rfc_5802_section_7() {
    assert_eq!(
        ScramError::InvalidProof.server_error_value(),
        "invalid-proof"
    );
    assert_eq!(
        ScramError::ChannelBindingMismatch.server_error_value(),
        "channel-bindings-dont-match"
    );
    assert_eq!(
        ScramError::ChannelBindingNotSupported.server_error_value(),
        "channel-binding-not-supported"
    );
    assert_eq!(
        ScramError::InvalidUsernameEncoding("x").server_error_value(),
        "invalid-username-encoding"
    );
}

use postbay_api::DkimAlgorithm;
use postbay_reconcile::DkimPrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey;

use super::keys::{key_path, parse_pem, KeyCache, SharedKey};
use super::*;

fn row(selector: &str, reference: &str) -> DkimKeyRow {
    DkimKeyRow {
        domain: "example.test".into(),
        selector: selector.into(),
        algorithm: "ed25519-sha256".into(),
        public_key: String::new(),
        private_key_ref: reference.into(),
        enabled: true,
        owner: None,
    }
}

#[test]
fn reads_pkcs8_ed25519_pkcs8_rsa_and_pkcs1_rsa() {
    let ed = DkimPrivateKey::generate(DkimAlgorithm::Ed25519Sha256).unwrap();
    let key = parse_pem(ed.to_pem().unwrap().as_bytes()).unwrap();
    assert!(matches!(
        key,
        mail_auth::common::crypto::DkimKey::Ed25519(_)
    ));

    let rsa = DkimPrivateKey::generate(DkimAlgorithm::RsaSha256).unwrap();
    let key = parse_pem(rsa.to_pem().unwrap().as_bytes()).unwrap();
    assert!(matches!(key, mail_auth::common::crypto::DkimKey::Rsa(_)));

    let DkimPrivateKey::Rsa(inner) = &rsa else {
        unreachable!("generated as RSA")
    };
    let pkcs1 = inner.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).unwrap();
    assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let key = parse_pem(pkcs1.as_bytes()).unwrap();
    assert!(matches!(key, mail_auth::common::crypto::DkimKey::Rsa(_)));
}

#[test]
fn refuses_what_it_cannot_sign_with_and_says_why_without_key_bytes() {
    assert!(matches!(parse_pem(b"hello"), Err(KeyError::Unreadable)));
    let small = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 1024).unwrap();
    let pem = small.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).unwrap();
    let Err(error) = parse_pem(pem.as_bytes()) else {
        panic!("a 1024-bit RSA key was accepted")
    };
    let text = error.to_string();
    assert!(text.contains("2048 to 4096"), "{text}");
    let body: String = pem.lines().nth(1).unwrap().into();
    assert!(!text.contains(&body) && !format!("{error:?}").contains(&body));
}

#[test]
fn debug_of_a_key_shows_the_algorithm_only() {
    let ed = DkimPrivateKey::generate(DkimAlgorithm::Ed25519Sha256).unwrap();
    let key = SharedKey::from(parse_pem(ed.to_pem().unwrap().as_bytes()).unwrap());
    assert_eq!(format!("{key:?}"), "SharedKey(ed25519-sha256)");
}

#[test]
fn resolves_the_mounted_file_first_then_the_row_reference() {
    let dir = tempfile::tempdir().unwrap();
    let mounted = KeySource {
        keys_dir: Some(dir.path().to_path_buf()),
    };
    let secret = row("s1", "secret:mail/dkim-s1/private.key");
    // Not mounted (yet): the error names the file it looked for.
    match key_path(&mounted, &secret) {
        Err(KeyError::SecretNotMounted { expected, .. }) => {
            assert_eq!(expected, Some(dir.path().join("example.test.s1.key")))
        }
        other => panic!("expected SecretNotMounted, got {other:?}"),
    }
    assert!(matches!(
        key_path(&KeySource::default(), &secret),
        Err(KeyError::SecretNotMounted { expected: None, .. })
    ));
    let file = row("s1", "file:/somewhere/s1.pem");
    assert_eq!(
        key_path(&mounted, &file).unwrap(),
        PathBuf::from("/somewhere/s1.pem")
    );
    std::fs::write(dir.path().join("example.test.s1.key"), "x").unwrap();
    assert_eq!(
        key_path(&mounted, &secret).unwrap(),
        dir.path().join("example.test.s1.key")
    );
    assert_eq!(
        key_path(&mounted, &file).unwrap(),
        dir.path().join("example.test.s1.key")
    );
    assert!(matches!(
        key_path(&KeySource::default(), &row("s1", "vault:x")),
        Err(KeyError::UnknownReference(_))
    ));
    assert!(matches!(
        key_path(&mounted, &row("../s1", "secret:a/b/c")),
        Err(KeyError::BadName(_))
    ));
}

#[test]
fn a_rewritten_key_file_is_parsed_again_an_unchanged_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s1.pem");
    let first = DkimPrivateKey::generate(DkimAlgorithm::Ed25519Sha256).unwrap();
    std::fs::write(&path, first.to_pem().unwrap()).unwrap();
    let row = row("s1", &format!("file:{}", path.display()));
    let cache = KeyCache::default();
    let source = KeySource::default();
    let a = cache.key_for(&source, &row).unwrap();
    let again = cache.key_for(&source, &row).unwrap();
    assert!(
        a.same_as(&again),
        "an unchanged file is served from the cache"
    );
    assert_eq!(cache.len(), 1);

    // Replaced the way postbay-reconcile and Secret volumes do it: a new file moved over
    // the old name (an in-place rewrite of the same size within one timestamp tick would
    // go unnoticed until the next change).
    let second = DkimPrivateKey::generate(DkimAlgorithm::Ed25519Sha256).unwrap();
    let tmp = dir.path().join("s1.pem.tmp");
    std::fs::write(&tmp, second.to_pem().unwrap()).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let b = cache.key_for(&source, &row).unwrap();
    assert!(!a.same_as(&b));
    assert_eq!(cache.len(), 1);
    use mail_auth::common::crypto::DkimKey;
    let public = |k: &SharedKey| match k.inner() {
        DkimKey::Ed25519(ed) => ed.public_key(),
        DkimKey::Rsa(_) => unreachable!(),
    };
    let expected = second.public_key_base64().unwrap();
    use base64::Engine;
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(public(&b)),
        expected
    );
}

#[test]
fn signed_reports_why_a_message_is_unsigned() {
    let none = Signed {
        header: Vec::new(),
        signatures: Vec::new(),
        skipped: Vec::new(),
    };
    assert_eq!(none.unsigned(), Some(Unsigned::NoKey));
    let failed = Signed {
        skipped: vec![SkippedKey {
            selector: "s1".into(),
            error: KeyError::Unreadable,
        }],
        ..none
    };
    assert_eq!(failed.unsigned(), Some(Unsigned::NoUsableKey));
}

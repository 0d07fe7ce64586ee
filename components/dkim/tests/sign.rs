//! Signing real messages with keys made the way `postbay apply` and the operator make them,
//! checked by an independent verifier (dkimpy, through /work/shared/peers/dkim-verify.py)
//! against the TXT records postbay-reconcile's DNS guidance publishes. On SQLite and, when
//! configured, MariaDB.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use postbay_api::{DkimAlgorithm, DkimKeySpec, DnsRecord};
use postbay_dkim::{KeyError, KeySource, Signed, Signer, Unsigned};
use postbay_reconcile::dkim::KeyMaterial;
use postbay_reconcile::key_files::KeyFiles;
use postbay_reconcile::{DkimPrivateKey, Owner};
use postbay_store::Store;
use postbay_testkit::{require_peers, seed_domain, stores};

/// The verifier script; `POSTBAY_DKIM_VERIFY` overrides where it is.
const VERIFIER: &str = "/work/shared/peers/dkim-verify.py";

struct Verifier {
    python: PathBuf,
    script: PathBuf,
}

/// The verifier, or `None` after saying why the test is skipped (panics when peers are
/// required, so CI never passes without having verified).
fn verifier() -> Option<Verifier> {
    let python = postbay_testkit::peer("python3")?;
    let script = PathBuf::from(std::env::var("POSTBAY_DKIM_VERIFY").unwrap_or(VERIFIER.into()));
    let missing = if !script.is_file() {
        Some(format!("{} does not exist", script.display()))
    } else {
        let modules = Command::new(&python)
            .args(["-c", "import dkim, nacl"])
            .output()
            .expect("running python3");
        (!modules.status.success()).then(|| {
            format!(
                "python3 cannot import dkimpy and pynacl: {}",
                String::from_utf8_lossy(&modules.stderr)
            )
        })
    };
    if let Some(why) = missing {
        if require_peers() {
            panic!("POSTBAY_REQUIRE_PEERS=1 but the DKIM verifier cannot run: {why}");
        }
        eprintln!("SKIP: the DKIM verifier cannot run: {why}");
        return None;
    }
    Some(Verifier { python, script })
}

impl Verifier {
    /// Runs the verifier on `message` with every signature checked (`--all`) and the
    /// `records` as its DNS: one file per name holding the record's presentation form, the
    /// quoted strings a zone file would carry. Returns (exit code, output).
    fn check(&self, records: &[&DnsRecord], message: &[u8]) -> (i32, String) {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        for record in records {
            std::fs::write(keys.join(&record.name), &record.value).unwrap();
        }
        let file = dir.path().join("message.eml");
        std::fs::write(&file, message).unwrap();
        let out = Command::new(&self.python)
            .arg(&self.script)
            .arg("--keys")
            .arg(&keys)
            .arg("--all")
            .arg(&file)
            .output()
            .expect("running the DKIM verifier");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }

    fn assert_ok(&self, records: &[&DnsRecord], message: &[u8], what: &str) {
        let (code, text) = self.check(records, message);
        assert_eq!(code, 0, "{what}: verification failed:\n{text}");
    }

    fn assert_fails(&self, records: &[&DnsRecord], message: &[u8], what: &str) {
        let (code, text) = self.check(records, message);
        assert_eq!(code, 1, "{what}: expected exit 1:\n{text}");
        assert!(
            text.contains("signature verification failed"),
            "{what}: {text}"
        );
    }
}

/// A key generated and stored as `postbay apply` does it: a PEM file under the data folder,
/// the row written by the reconcile core. Returns the TXT record to publish for it.
async fn apply_key(
    store: &Store,
    data: &Path,
    domain: &str,
    selector: &str,
    algorithm: DkimAlgorithm,
) -> DnsRecord {
    let spec = spec(domain, selector, algorithm);
    let (material, _) = KeyFiles::new(data).material(&spec, None).unwrap();
    write_row(store, &spec, &material).await
}

/// A key as the operator keeps it: in a Secret (`secret:` reference in the row), mirrored
/// by the operator into the key directory the smtp pods mount (the caller writes the file).
async fn apply_secret_key(
    store: &Store,
    domain: &str,
    selector: &str,
    key: DkimPrivateKey,
) -> DnsRecord {
    let spec = spec(domain, selector, key.algorithm());
    let material = KeyMaterial {
        key,
        private_key_ref: format!("secret:mail/dkim-{selector}/private.key"),
    };
    write_row(store, &spec, &material).await
}

fn spec(domain: &str, selector: &str, algorithm: DkimAlgorithm) -> DkimKeySpec {
    DkimKeySpec {
        domain: domain.into(),
        selector: selector.into(),
        algorithm,
        secret_ref: None,
    }
}

async fn write_row(store: &Store, spec: &DkimKeySpec, material: &KeyMaterial) -> DnsRecord {
    let owner = Owner::new("mail", format!("dkim-{}", spec.selector));
    let outcome = postbay_reconcile::dkim::apply(store, &owner, spec, material)
        .await
        .unwrap();
    assert!(
        matches!(outcome, postbay_reconcile::Outcome::Applied(_)),
        "{outcome:?}"
    );
    postbay_reconcile::dns::dkim_record(
        &spec.domain,
        &spec.selector,
        spec.algorithm,
        &material.key.public_key_base64().unwrap(),
    )
}

fn prepend(signed: &Signed, message: &[u8]) -> Vec<u8> {
    let mut out = signed.header.clone();
    out.extend_from_slice(message);
    out
}

/// The messages every key signs: multipart with folded header fields, 8-bit text, and a
/// plain one with trailing blank lines (which relaxed body canonicalisation drops).
fn messages(domain: &str) -> Vec<Vec<u8>> {
    let multipart = format!(
        "From: Ann Example <ann@{domain}>\r\n\
         To: Bob <bob@example.net>,\r\n\
         \tCarol <carol@example.net>\r\n\
         Subject: Quarterly figures, with a subject long enough\r\n\
         \x20that it had to be folded onto a second line\r\n\
         Date: Mon, 2 Mar 2026 10:00:00 +0100\r\n\
         Message-ID: <20260302.1@{domain}>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
         \r\n\
         This is a multi-part message in MIME format.\r\n\
         --b1\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         Grüße aus Köln – the figures are attached.  \r\n\
         \r\n\
         --b1\r\n\
         Content-Type: application/octet-stream; name=\"figures.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n\
         AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v\r\n\
         --b1--\r\n"
    );
    let plain = format!(
        "From: ann@{domain}\r\n\
         To: dave@example.org\r\n\
         Cc: eve@example.org\r\n\
         Reply-To: ann+replies@{domain}\r\n\
         Subject: =?utf-8?q?Caf=C3=A9?=\r\n\
         Date: Mon, 2 Mar 2026 10:05:00 +0100\r\n\
         Message-ID: <20260302.2@{domain}>\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         Straße\t \r\n\
         line with trailing tab\t\r\n\
         \r\n\
         \r\n"
    );
    vec![multipart.into_bytes(), plain.into_bytes()]
}

#[tokio::test]
async fn rsa_and_ed25519_keys_each_sign_messages_that_verify() {
    let Some(verifier) = verifier() else { return };
    for ts in stores("dkim_each").await {
        let data = tempfile::tempdir().unwrap();
        seed_domain(&ts.store, "rsa.example").await;
        seed_domain(&ts.store, "ed.example").await;
        let rsa = apply_key(
            &ts.store,
            data.path(),
            "rsa.example",
            "r1",
            DkimAlgorithm::RsaSha256,
        )
        .await;
        let ed = apply_key(
            &ts.store,
            data.path(),
            "ed.example",
            "e1",
            DkimAlgorithm::Ed25519Sha256,
        )
        .await;
        let signer = Signer::new(ts.store.clone(), KeySource::default());
        for (domain, record, algorithm) in [
            ("rsa.example", &rsa, "rsa-sha256"),
            ("ed.example", &ed, "ed25519-sha256"),
        ] {
            for message in messages(domain) {
                let signed = signer.sign(domain, &message).await.unwrap();
                assert_eq!(signed.unsigned(), None, "{}: {signed:?}", ts.name);
                assert_eq!(signed.signatures.len(), 1);
                assert_eq!(signed.signatures[0].algorithm, algorithm);
                let header = String::from_utf8(signed.header.clone()).unwrap();
                assert!(header.starts_with("DKIM-Signature: v=1; a="), "{header}");
                assert!(header.ends_with("\r\n") && !header.contains("\r\n\r\n"));
                // Folded (RFC 5322 section 2.2.3): continuation lines start with WSP and
                // none reaches the 998-octet limit of section 2.1.1. (mail-auth folds
                // near 76 but lets a line reach 80, past the 78 that is only a SHOULD.)
                let lines: Vec<&str> = header.split("\r\n").filter(|l| !l.is_empty()).collect();
                assert!(lines.len() > 3, "folded: {header}");
                assert!(lines[1..].iter().all(|l| l.starts_with('\t')), "{header}");
                assert!(lines.iter().all(|l| l.len() <= 998), "{header}");
                assert!(header.contains("c=relaxed/relaxed"), "{header}");
                assert!(!header.contains("l="), "no body length tag: {header}");
                verifier.assert_ok(&[record], &prepend(&signed, &message), ts.name);
            }
        }
        ts.cleanup().await;
    }
}

#[tokio::test]
async fn a_domain_with_both_keys_gets_both_signatures() {
    let Some(verifier) = verifier() else { return };
    for ts in stores("dkim_both").await {
        let data = tempfile::tempdir().unwrap();
        seed_domain(&ts.store, "example.com").await;
        // Ed25519 first in selector order: the RSA signature must still end up on top.
        let ed = apply_key(
            &ts.store,
            data.path(),
            "example.com",
            "a-ed",
            DkimAlgorithm::Ed25519Sha256,
        )
        .await;
        let rsa = apply_key(
            &ts.store,
            data.path(),
            "example.com",
            "b-rsa",
            DkimAlgorithm::RsaSha256,
        )
        .await;
        let signer = Signer::new(ts.store.clone(), KeySource::default());
        for message in messages("example.com") {
            let signed = signer.sign("Example.COM", &message).await.unwrap();
            let got: Vec<_> = signed
                .signatures
                .iter()
                .map(|s| (s.selector.as_str(), s.algorithm))
                .collect();
            assert_eq!(got, [("b-rsa", "rsa-sha256"), ("a-ed", "ed25519-sha256")]);
            let header = String::from_utf8(signed.header.clone()).unwrap();
            assert_eq!(header.matches("DKIM-Signature:").count(), 2);
            assert!(
                header.starts_with("DKIM-Signature: v=1; a=rsa-sha256; s=b-rsa; d=example.com;")
            );
            let full = prepend(&signed, &message);
            verifier.assert_ok(&[&rsa, &ed], &full, ts.name);
            // Each signature is checked on its own: without the RSA record one fails.
            verifier.assert_fails(&[&ed], &full, "RSA record missing");
        }
        ts.cleanup().await;
    }
}

#[tokio::test]
async fn tampering_fails_verification_and_oversigning_blocks_added_fields() {
    let Some(verifier) = verifier() else { return };
    for ts in stores("dkim_tamper").await {
        let data = tempfile::tempdir().unwrap();
        seed_domain(&ts.store, "example.com").await;
        let rsa = apply_key(
            &ts.store,
            data.path(),
            "example.com",
            "r1",
            DkimAlgorithm::RsaSha256,
        )
        .await;
        let ed = apply_key(
            &ts.store,
            data.path(),
            "example.com",
            "e1",
            DkimAlgorithm::Ed25519Sha256,
        )
        .await;
        let records = [&rsa, &ed];
        let signer = Signer::new(ts.store.clone(), KeySource::default());
        let message = messages("example.com").remove(0);
        let signed = signer.sign("example.com", &message).await.unwrap();
        let full = prepend(&signed, &message);
        verifier.assert_ok(&records, &full, "untouched");

        let replace = |from: &str, to: &str| {
            let text = String::from_utf8(full.clone()).unwrap();
            assert!(text.contains(from), "{from}");
            text.replacen(from, to, 1).into_bytes()
        };
        let on_top = |field: &str| {
            let mut out = field.as_bytes().to_vec();
            out.extend_from_slice(&full);
            out
        };
        verifier.assert_fails(
            &records,
            &replace("the figures are", "the figures aren't"),
            "body",
        );
        verifier.assert_fails(
            &records,
            &replace("Quarterly figures", "Quarterly fissures"),
            "Subject",
        );
        verifier.assert_fails(
            &records,
            &on_top("From: mallory@example.com\r\n"),
            "second From",
        );
        verifier.assert_fails(
            &records,
            &on_top("Subject: Urgent: wire money\r\n"),
            "second Subject",
        );
        verifier.assert_fails(
            &records,
            &on_top("Reply-To: mallory@example.net\r\n"),
            "added Reply-To",
        );
        verifier.assert_fails(&records, &on_top("Cc: mallory@example.net\r\n"), "added Cc");
        verifier.assert_fails(
            &records,
            &on_top("Content-Type: text/html\r\n"),
            "second Content-Type",
        );
        // What later hops legitimately add does not break it.
        verifier.assert_ok(
            &records,
            &on_top("Received: from relay by mx; Mon, 2 Mar 2026\r\n"),
            "Received",
        );
        verifier.assert_ok(
            &records,
            &on_top("List-Id: <team.example.com>\r\n"),
            "List-Id",
        );
        ts.cleanup().await;
    }
}

#[tokio::test]
async fn a_key_file_replaced_on_disk_signs_without_a_new_signer() {
    let Some(verifier) = verifier() else { return };
    for ts in stores("dkim_rotate").await {
        let data = tempfile::tempdir().unwrap();
        seed_domain(&ts.store, "example.com").await;
        let old = apply_key(
            &ts.store,
            data.path(),
            "example.com",
            "s1",
            DkimAlgorithm::Ed25519Sha256,
        )
        .await;
        let signer = Signer::new(ts.store.clone(), KeySource::default());
        let message = messages("example.com").remove(1);
        let first = signer.sign("example.com", &message).await.unwrap();
        verifier.assert_ok(&[&old], &prepend(&first, &message), "before");

        // `postbay apply` with a supplied key: the file is replaced, then the row updated.
        let spec = spec("example.com", "s1", DkimAlgorithm::Ed25519Sha256);
        let supplied = DkimPrivateKey::generate(DkimAlgorithm::Ed25519Sha256).unwrap();
        let (material, _) = KeyFiles::new(data.path())
            .material(&spec, Some(&supplied.to_pem().unwrap()))
            .unwrap();
        let new = write_row(&ts.store, &spec, &material).await;
        assert_ne!(old.value, new.value);

        // The row cache may still hold the old row; the file is what signs.
        let second = signer.sign("example.com", &message).await.unwrap();
        let full = prepend(&second, &message);
        verifier.assert_ok(&[&new], &full, "after");
        verifier.assert_fails(&[&old], &full, "old record after the change");
        ts.cleanup().await;
    }
}

#[tokio::test]
async fn added_and_disabled_keys_apply_once_the_rows_are_read_again() {
    let Some(verifier) = verifier() else { return };
    for ts in stores("dkim_rows").await {
        let data = tempfile::tempdir().unwrap();
        seed_domain(&ts.store, "example.com").await;
        let ttl = Duration::from_millis(200);
        let signer = Signer::with_row_ttl(ts.store.clone(), KeySource::default(), ttl);
        let message = messages("example.com").remove(1);
        assert_eq!(
            signer
                .sign("example.com", &message)
                .await
                .unwrap()
                .unsigned(),
            Some(Unsigned::NoKey)
        );
        let ed = apply_key(
            &ts.store,
            data.path(),
            "example.com",
            "e1",
            DkimAlgorithm::Ed25519Sha256,
        )
        .await;
        tokio::time::sleep(ttl + Duration::from_millis(50)).await;
        let signed = signer.sign("example.com", &message).await.unwrap();
        assert_eq!(signed.signatures.len(), 1, "{signed:?}");
        verifier.assert_ok(&[&ed], &prepend(&signed, &message), ts.name);

        let mut row = ts.store.dkim_keys("example.com").await.unwrap().remove(0);
        row.enabled = false;
        ts.store.put_dkim_key(&row).await.unwrap();
        tokio::time::sleep(ttl + Duration::from_millis(50)).await;
        let signed = signer.sign("example.com", &message).await.unwrap();
        assert_eq!(signed.unsigned(), Some(Unsigned::NoKey), "{signed:?}");
        assert!(signed.header.is_empty());
        ts.cleanup().await;
    }
}

#[tokio::test]
async fn mounted_key_directory_serves_secret_references() {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    let Some(verifier) = verifier() else { return };
    for ts in stores("dkim_mount").await {
        let mount = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        seed_domain(&ts.store, "example.com").await;
        // An RSA key supplied as PKCS#1 (`openssl genrsa -traditional`), mirrored into the mount.
        let rsa = DkimPrivateKey::generate(DkimAlgorithm::RsaSha256).unwrap();
        let DkimPrivateKey::Rsa(inner) = &rsa else {
            unreachable!()
        };
        let pkcs1 = inner.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).unwrap();
        std::fs::write(
            mount.path().join("example.com.mounted.key"),
            pkcs1.as_bytes(),
        )
        .unwrap();
        let mounted = apply_secret_key(&ts.store, "example.com", "mounted", rsa).await;
        // A Secret the operator has not mirrored (yet): skipped, the others still sign.
        let absent = DkimPrivateKey::generate(DkimAlgorithm::Ed25519Sha256).unwrap();
        apply_secret_key(&ts.store, "example.com", "unmirrored", absent).await;
        // A `file:` row whose key is mounted too: the mounted file wins.
        let local = apply_key(
            &ts.store,
            data.path(),
            "example.com",
            "local",
            DkimAlgorithm::Ed25519Sha256,
        )
        .await;
        let pem = std::fs::read(KeyFiles::new(data.path()).path("example.com", "local")).unwrap();
        std::fs::write(mount.path().join("example.com.local.key"), pem).unwrap();
        std::fs::remove_dir_all(data.path().join("dkim")).unwrap();

        let signer = Signer::new(
            ts.store.clone(),
            KeySource {
                keys_dir: Some(mount.path().to_path_buf()),
            },
        );
        let message = messages("example.com").remove(0);
        let signed = signer.sign("example.com", &message).await.unwrap();
        let got: Vec<_> = signed
            .signatures
            .iter()
            .map(|s| s.selector.as_str())
            .collect();
        assert_eq!(got, ["mounted", "local"], "{signed:?}");
        assert_eq!(signed.skipped.len(), 1, "{signed:?}");
        assert_eq!(signed.skipped[0].selector, "unmirrored");
        match &signed.skipped[0].error {
            KeyError::SecretNotMounted { expected, .. } => assert_eq!(
                expected.as_deref(),
                Some(mount.path().join("example.com.unmirrored.key").as_path())
            ),
            other => panic!("expected SecretNotMounted, got {other}"),
        }
        verifier.assert_ok(&[&mounted, &local], &prepend(&signed, &message), ts.name);

        // Without the mount, a secret: reference cannot be read at all.
        let unmounted = Signer::new(ts.store.clone(), KeySource::default());
        let signed = unmounted.sign("example.com", &message).await.unwrap();
        assert_eq!(signed.unsigned(), Some(Unsigned::NoUsableKey), "{signed:?}");
        assert_eq!(signed.skipped.len(), 3);
        ts.cleanup().await;
    }
}

#[tokio::test]
async fn domains_without_keys_and_messages_without_from() {
    for ts in stores("dkim_none").await {
        seed_domain(&ts.store, "example.com").await;
        let signer = Signer::new(ts.store.clone(), KeySource::default());
        let message = messages("example.com").remove(1);
        let signed = signer.sign("example.com", &message).await.unwrap();
        assert_eq!(signed.unsigned(), Some(Unsigned::NoKey));
        assert!(signed.header.is_empty() && signed.signatures.is_empty());
        let signed = signer.sign("not-ours.example", &message).await.unwrap();
        assert_eq!(signed.unsigned(), Some(Unsigned::NoKey));
        let no_from = b"To: a@example.org\r\nSubject: x\r\n\r\nbody\r\n";
        assert!(matches!(
            signer.sign("example.com", no_from).await,
            Err(postbay_dkim::DkimError::NoFrom)
        ));
        ts.cleanup().await;
    }
}

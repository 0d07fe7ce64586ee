//! `postbay apply` as a user runs it: the real binary against a temp data folder, on SQLite
//! and (when POSTBAY_TEST_MYSQL_URL is set) on a uniquely named MariaDB database.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use postbay_store::Store;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn examples() -> PathBuf {
    repo_root().join("examples/example.test")
}

/// One place to apply to: a data folder and a database URL, with the database dropped at
/// the end when it is MariaDB's.
struct Target {
    name: &'static str,
    dir: tempfile::TempDir,
    url: String,
    database: postbay_testkit::TestDatabase,
}

impl Target {
    async fn all() -> Vec<Target> {
        let dir = tempfile::tempdir().unwrap();
        let mut out = vec![Target::new(postbay_testkit::sqlite(dir.path()), dir)];
        if let Some(server) = postbay_testkit::mariadb_server() {
            let database = postbay_testkit::mariadb(&server, "apply").await;
            out.push(Target::new(
                database,
                tempfile::tempdir().expect("a temporary directory"),
            ));
        }
        out
    }

    fn new(database: postbay_testkit::TestDatabase, dir: tempfile::TempDir) -> Target {
        Target {
            name: database.name,
            dir,
            url: database.url.clone(),
            database,
        }
    }

    fn apply(&self, files: &[&Path], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_postbay"));
        cmd.arg("apply")
            .arg("--data")
            .arg(self.dir.path())
            .arg("--database-url")
            .arg(&self.url)
            .arg("--mail-host")
            .arg("mail.example.test")
            .env_remove("POSTBAY_CONFIG")
            .env("RUST_BACKTRACE", "0");
        for f in files {
            cmd.arg("-f").arg(f);
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("postbay runs");
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
        drop(input);
        child.wait_with_output().unwrap()
    }

    async fn store(&self) -> Store {
        Store::open(&self.url, &self.dir.path().join("mail"))
            .await
            .unwrap()
    }

    async fn cleanup(self) {
        self.database.cleanup().await;
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn examples_apply_and_reapplying_changes_nothing() {
    for t in Target::all().await {
        let out = t.apply(&[&examples()], None);
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {stdout}\n{}",
            t.name,
            text(&out.stderr)
        );
        for line in [
            "maildomain/example created",
            "mailbox/alice created",
            "mailbox/bob created",
            "mailalias/team created",
            "dkimkey/example-2026 created (key generated)",
            "DNS records to publish for example.test:",
            "example.test. IN MX 10 mail.example.test.",
            "example.test. IN TXT \"v=spf1 mx -all\"",
            "s2026._domainkey.example.test. IN TXT \"v=DKIM1; k=rsa; p=MIIB",
            "_dmarc.example.test. IN TXT \"v=DMARC1; p=quarantine; rua=mailto:dmarc-reports@example.test\"",
            "_submissions._tcp.example.test. IN SRV 0 1 465 mail.example.test.",
        ] {
            assert!(stdout.contains(line), "{}: missing {line:?} in\n{stdout}", t.name);
        }

        let store = t.store().await;
        let domain = store.domain("example.test").await.unwrap().unwrap();
        assert_eq!(domain.owner.as_deref(), Some("default/example"));
        let alice = store.mailbox("alice@example.test").await.unwrap().unwrap();
        assert!(
            alice.password_hash.starts_with("{ARGON2ID}"),
            "{}",
            alice.password_hash
        );
        assert!(postbay_passwd::verify(b"change-me-alice", &alice.password_hash).unwrap());
        assert_eq!(alice.quota_bytes, 1 << 30);
        assert_eq!(
            store.alias_destinations("team@example.test").await.unwrap(),
            ["alice@example.test", "bob@example.test"]
        );
        assert_eq!(
            store
                .alias_destinations("postmaster@example.test")
                .await
                .unwrap(),
            ["alice@example.test"]
        );
        let keys = store.dkim_keys("example.test").await.unwrap();
        assert_eq!(keys.len(), 1);
        let key_file = keys[0]
            .private_key_ref
            .strip_prefix("file:")
            .expect("a file reference");
        assert!(std::fs::read_to_string(key_file)
            .unwrap()
            .contains("BEGIN PRIVATE KEY"));

        let again = t.apply(&[&examples()], None);
        let stdout = text(&again.stdout);
        assert!(again.status.success(), "{stdout}\n{}", text(&again.stderr));
        for kind in [
            "maildomain/example",
            "mailbox/alice",
            "mailbox/bob",
            "mailalias/team",
            "dkimkey/example-2026",
        ] {
            assert!(
                stdout.contains(&format!("{kind} unchanged\n")),
                "{}: {kind} changed on re-apply:\n{stdout}",
                t.name
            );
        }
        let after = store.mailbox("alice@example.test").await.unwrap().unwrap();
        assert_eq!(
            after.password_hash, alice.password_hash,
            "re-apply re-hashed the password"
        );
        assert_eq!(
            store.dkim_keys("example.test").await.unwrap(),
            keys,
            "re-apply replaced the key"
        );
        store.close().await;
        t.cleanup().await;
    }
}

#[tokio::test]
async fn one_bad_document_applies_nothing_and_is_named() {
    let stream = "\
apiVersion: postbay.dev/v1alpha1
kind: MailDomain
metadata: {name: other}
spec: {domain: other.test}
---
apiVersion: v1
kind: Secret
metadata: {name: pw}
stringData: {carol: secret}
---
apiVersion: postbay.dev/v1alpha1
kind: Mailbox
metadata: {name: carol}
spec:
  address: carol@nowhere.test
  passwordSecretRef: {name: pw, key: carol}
";
    for t in Target::all().await {
        let out = t.apply(&[Path::new("-")], Some(stream));
        let stderr = text(&out.stderr);
        assert!(
            !out.status.success(),
            "{}: a bad stream was accepted",
            t.name
        );
        assert!(
            stderr.contains("<stdin>: document 3 (Mailbox \"carol\"): spec.address: domain nowhere.test is not declared"),
            "{}: {stderr}",
            t.name
        );
        assert!(stderr.contains("nothing applied"), "{stderr}");
        let store = t.store().await;
        assert!(
            store.list_domains().await.unwrap().is_empty(),
            "{}: the good document was applied",
            t.name
        );
        store.close().await;
        t.cleanup().await;
    }
}

#[tokio::test]
async fn schema_errors_name_document_and_field_and_several_files_are_one_set() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo.yaml");
    std::fs::write(
        &typo,
        "apiVersion: postbay.dev/v1alpha1\nkind: MailDomain\nmetadata: {name: d}\nspec: {domain: d.test, catchall: x}\n",
    )
    .unwrap();
    let mut targets = Target::all().await;
    let t = targets.remove(0);
    for unused in targets {
        unused.cleanup().await;
    }
    let out = t.apply(&[&examples(), &typo], None);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("typo.yaml: document 1 (MailDomain \"d\"): spec.catchall: unknown field (did you mean \"catchAll\"?)"), "{stderr}");
    assert!(
        !t.dir.path().join("postbay.db").exists() || {
            let store = t.store().await;
            let empty = store.list_domains().await.unwrap().is_empty();
            store.close().await;
            empty
        }
    );

    // A mailbox in one file may use the domain and the Secret of another.
    let domain = dir.path().join("a-domain.yaml");
    std::fs::copy(examples().join("domain.yaml"), &domain).unwrap();
    let boxes = dir.path().join("b-mailboxes.yaml");
    std::fs::copy(examples().join("mailboxes.yaml"), &boxes).unwrap();
    std::fs::remove_file(&typo).unwrap();
    let out = t.apply(&[dir.path()], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("mailbox/bob created"));
    t.cleanup().await;
}

#[tokio::test]
async fn a_dkim_key_from_a_secret_in_the_stream_is_used_and_checked() {
    let key =
        postbay_reconcile::DkimPrivateKey::generate(postbay_api::DkimAlgorithm::Ed25519Sha256)
            .unwrap();
    let pem = key.to_pem().unwrap();
    let indented: String = pem.lines().map(|l| format!("    {l}\n")).collect();
    let stream = |algorithm: &str| {
        format!(
            "apiVersion: postbay.dev/v1alpha1\nkind: MailDomain\nmetadata: {{name: d}}\nspec: {{domain: keys.test}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: dkim}}\nstringData:\n  private.key: |\n{indented}---\n\
             apiVersion: postbay.dev/v1alpha1\nkind: DkimKey\nmetadata: {{name: k}}\n\
             spec: {{domain: keys.test, selector: s1, algorithm: {algorithm}, secretRef: {{name: dkim}}}}\n"
        )
    };
    for t in Target::all().await {
        let wrong = t.apply(&[Path::new("-")], Some(&stream("rsa-sha256")));
        let stderr = text(&wrong.stderr);
        assert!(!wrong.status.success());
        assert!(
            stderr.contains("document 3 (DkimKey \"k\"): spec.secretRef: Secret \"dkim\" key \"private.key\": the key is ed25519-sha256 but spec.algorithm is rsa-sha256"),
            "{}: {stderr}",
            t.name
        );

        let dry = {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_postbay"));
            cmd.args([
                "apply",
                "--dry-run",
                "-f",
                "-",
                "--database-url",
                &t.url,
                "--data",
            ])
            .arg(t.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
            let mut child = cmd.spawn().unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(stream("ed25519-sha256").as_bytes())
                .unwrap();
            child.wait_with_output().unwrap()
        };
        assert!(dry.status.success(), "{}", text(&dry.stderr));
        assert!(text(&dry.stdout).contains("dry run, nothing applied"));

        let out = t.apply(&[Path::new("-")], Some(&stream("ed25519-sha256")));
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{}: {}", t.name, text(&out.stderr));
        assert!(
            stdout.contains("dkimkey/k created (key from Secret)"),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!(
                "s1._domainkey.keys.test. IN TXT \"v=DKIM1; k=ed25519; p={}\"",
                key.public_key_base64().unwrap()
            )),
            "{stdout}"
        );
        let store = t.store().await;
        let rows = store.dkim_keys("keys.test").await.unwrap();
        assert_eq!(rows[0].public_key, key.public_key_base64().unwrap());
        store.close().await;
        t.cleanup().await;
    }
}

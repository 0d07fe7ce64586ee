//! The classic stack reads what Postbay writes: Debian's Postfix (`postmap -q` against the
//! mysql: maps in docs/classic-stack/postfix) and Dovecot (`doveadm auth test` and
//! `doveadm user` against the SQL passdb/userdb in docs/classic-stack/dovecot), on rows
//! written by the reconcile core the operator runs, in MariaDB.
//!
//! Needs POSTBAY_TEST_MYSQL_URL, postfix-mysql and dovecot-mysql; skipped with a note when
//! one is missing, unless POSTBAY_REQUIRE_PEERS=1 (CI), which makes that a failure.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use postbay_api::{MailAliasSpec, MailDomainSpec, MailboxSpec, SecretKeyRef};
use postbay_reconcile::{alias, domain, mailbox, Owner};

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/classic-stack")
}

fn skip(why: &str) {
    if std::env::var("POSTBAY_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("POSTBAY_REQUIRE_PEERS=1 but {why}");
    }
    let _ = writeln!(std::io::stderr(), "SKIP classic stack: {why}");
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `mysql://user[:password]@host[:port]` → (user, password, host, port).
fn parse_server(url: &str) -> (String, String, String, u16) {
    let rest = url
        .split_once("://")
        .map_or(url, |(_, r)| r)
        .trim_end_matches('/');
    let (creds, hostport) = rest.rsplit_once('@').unwrap_or(("root", rest));
    let (user, password) = creds.split_once(':').unwrap_or((creds, ""));
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "3306"));
    (
        user.into(),
        password.into(),
        host.into(),
        port.parse().unwrap(),
    )
}

fn spec_domain(name: &str, catch_all: Option<&str>) -> MailDomainSpec {
    MailDomainSpec {
        domain: name.into(),
        catch_all: catch_all.map(Into::into),
        dmarc: None,
        mta_sts: None,
        spam_filter: None,
    }
}

fn spec_mailbox(
    address: &str,
    aliases: &[&str],
    quota: Option<&str>,
    enabled: bool,
) -> MailboxSpec {
    MailboxSpec {
        address: address.into(),
        password_secret_ref: SecretKeyRef {
            name: "pw".into(),
            key: "pw".into(),
        },
        quota: quota.map(Into::into),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        enabled,
        send_as: Vec::new(),
        sending_limits: None,
    }
}

/// Kills Dovecot however the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn postfix_and_dovecot_read_the_rows() {
    let Ok(server) = std::env::var("POSTBAY_TEST_MYSQL_URL") else {
        return skip("POSTBAY_TEST_MYSQL_URL is not set");
    };
    let postfix_mysql = Command::new("postconf").arg("-m").output().is_ok_and(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .any(|l| l == "mysql")
    });
    if !postfix_mysql || !have("postmap") {
        return skip(
            "postmap with the mysql map type is not installed (apt-get install postfix-mysql)",
        );
    }
    if !have("dovecot") || !have("doveadm") || !Path::new("/usr/lib/dovecot/modules/auth").exists()
    {
        return skip("dovecot is not installed (apt-get install dovecot-core dovecot-mysql)");
    }

    let t = common::stores()
        .await
        .into_iter()
        .find(|t| t.name == "mariadb")
        .unwrap();
    let store = &t.store;
    let ns = "mail";
    domain::apply(
        store,
        &Owner::new(ns, "example"),
        &spec_domain("example.test", None),
    )
    .await
    .unwrap();
    domain::apply(
        store,
        &Owner::new(ns, "catch"),
        &spec_domain("catch.test", Some("bucket")),
    )
    .await
    .unwrap();
    let boxes = [
        (
            "alice",
            spec_mailbox(
                "alice@example.test",
                &["postmaster@example.test"],
                Some("1Gi"),
                true,
            ),
            "alice-secret",
        ),
        (
            "bob",
            spec_mailbox("bob@example.test", &[], None, true),
            "bob-secret",
        ),
        (
            "bucket",
            spec_mailbox("bucket@catch.test", &[], None, true),
            "bucket-secret",
        ),
        (
            "carol",
            spec_mailbox("carol@example.test", &[], None, false),
            "carol-secret",
        ),
    ];
    for (name, spec, password) in &boxes {
        mailbox::apply(store, &Owner::new(ns, *name), spec, password.as_bytes())
            .await
            .unwrap();
    }
    let team = MailAliasSpec {
        address: "team@example.test".into(),
        destinations: vec!["alice@example.test".into(), "bob@example.test".into()],
    };
    alias::apply(store, &Owner::new(ns, "team"), &team)
        .await
        .unwrap();

    let db = t
        .database
        .mariadb_name()
        .expect("the classic stack runs on MariaDB")
        .1
        .to_string();
    let (user, password, host, port) = parse_server(&server);
    let dir = tempfile::tempdir().unwrap();
    #[cfg(unix)]
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    // Postfix: the documented map files with this database's connection settings.
    let map = |name: &str| -> String {
        let text =
            std::fs::read_to_string(docs().join("postfix").join(format!("{name}.cf"))).unwrap();
        let text: String = text
            .lines()
            .map(|line| match line.split_once(" = ").map(|(k, _)| k) {
                Some("hosts") => format!("hosts = inet:{host}:{port}"),
                Some("user") => format!("user = {user}"),
                Some("password") => format!("password = {password}"),
                Some("dbname") => format!("dbname = {db}"),
                _ => line.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let path = dir.path().join(format!("{name}.cf"));
        std::fs::write(&path, text + "\n").unwrap();
        format!("mysql:{}", path.display())
    };
    let lookup = |key: &str, map: &str| -> Option<String> {
        let out = Command::new("postmap")
            .args(["-q", key, map])
            .output()
            .unwrap();
        match out.status.code() {
            Some(0) => Some(String::from_utf8_lossy(&out.stdout).trim().to_string()),
            Some(1) => None,
            _ => panic!(
                "postmap -q {key} {map} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    };
    let domains = map("virtual_mailbox_domains");
    let mailboxes = map("virtual_mailbox_maps");
    let aliases = map("virtual_alias_maps");
    let selves = map("virtual_alias_mailboxes");
    let catch_all = map("virtual_alias_catchall");
    assert_eq!(
        lookup("example.test", &domains).as_deref(),
        Some("example.test")
    );
    assert_eq!(
        lookup("elsewhere.test", &domains),
        None,
        "an undeclared domain would be relayed"
    );
    assert_eq!(
        lookup("alice@example.test", &mailboxes).as_deref(),
        Some("example.test/alice/Maildir/")
    );
    assert_eq!(
        lookup("nobody@example.test", &mailboxes),
        None,
        "an unknown mailbox must be rejected"
    );
    assert_eq!(
        lookup("carol@example.test", &mailboxes),
        None,
        "a disabled mailbox receives nothing"
    );
    assert_eq!(
        lookup("team@example.test", &aliases).as_deref(),
        Some("alice@example.test,bob@example.test")
    );
    assert_eq!(
        lookup("postmaster@example.test", &aliases).as_deref(),
        Some("alice@example.test")
    );
    assert_eq!(
        lookup("bucket@catch.test", &selves).as_deref(),
        Some("bucket@catch.test")
    );
    assert_eq!(
        lookup("@catch.test", &catch_all).as_deref(),
        Some("bucket@catch.test")
    );
    assert_eq!(lookup("@example.test", &catch_all), None);

    // Dovecot: the documented SQL settings, an auth-only instance in the temp folder.
    let sql = std::fs::read_to_string(docs().join("dovecot/dovecot-sql.conf.ext"))
        .unwrap()
        .replace(
            "connect = host=127.0.0.1 dbname=postbay user=dovecot password=CHANGE-ME",
            &format!(
                "connect = host={host} port={port} dbname={db} user={user} password={password}"
            ),
        );
    let sql_path = dir.path().join("dovecot-sql.conf.ext");
    std::fs::write(&sql_path, sql).unwrap();
    let base = dir.path().join("run");
    let conf = dir.path().join("dovecot.conf");
    std::fs::write(
        &conf,
        format!(
            "base_dir = {base}\nstate_dir = {state}\nlog_path = {log}\nprotocols = none\nlisten = 127.0.0.1\nssl = no\n\
             default_internal_user = dovecot\ndefault_login_user = dovenull\n\
             passdb {{\n  driver = sql\n  args = {sql}\n}}\nuserdb {{\n  driver = sql\n  args = {sql}\n}}\n",
            base = base.display(),
            state = dir.path().join("state").display(),
            log = dir.path().join("dovecot.log").display(),
            sql = sql_path.display(),
        ),
    )
    .unwrap();
    let _dovecot = Running(
        Command::new("dovecot")
            .arg("-F")
            .arg("-c")
            .arg(&conf)
            .spawn()
            .expect("dovecot starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while !base.join("auth-client").exists() {
        assert!(
            Instant::now() < deadline,
            "dovecot did not start: {:?}",
            std::fs::read_to_string(dir.path().join("dovecot.log"))
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let doveadm = |args: &[&str]| {
        let out = Command::new("doveadm")
            .arg("-c")
            .arg(&conf)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, text) = doveadm(&["auth", "test", "alice@example.test", "alice-secret"]);
    assert!(ok && text.contains("auth succeeded"), "{text}");
    let (ok, _) = doveadm(&["auth", "test", "alice@example.test", "wrong"]);
    assert!(!ok, "a wrong password authenticated");
    let (ok, _) = doveadm(&["auth", "test", "carol@example.test", "carol-secret"]);
    assert!(!ok, "a disabled mailbox authenticated");
    let (ok, text) = doveadm(&["user", "alice@example.test"]);
    assert!(ok, "{text}");
    assert!(text.contains("/example.test/alice"), "{text}");
    assert!(text.contains(&format!("*:bytes={}", 1u64 << 30)), "{text}");

    drop(_dovecot);
    t.cleanup().await;
}

//! Real clients against the in-process server: Python's imaplib (plain, STARTTLS, implicit
//! TLS), curl (imap:// with and without STARTTLS, imaps://), mbsync (isync) syncing a few
//! hundred messages both ways, and interimap resyncing against a local Dovecot with QRESYNC.

mod common;

use std::path::{Path, PathBuf};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imaplib_suite_plain_starttls_and_implicit_tls() {
    if peer("python3").is_none() {
        return;
    }
    each_backend(test_limits(), |env| async move {
        for (mode, port, user, password) in [
            ("plain", env.port(), ALICE, ALICE_PASSWORD),
            ("starttls", env.port(), BOB, BOB_PASSWORD),
        ] {
            let out = python(
                "imaplib_suite.py",
                &[
                    "127.0.0.1".into(),
                    port.to_string(),
                    user.into(),
                    password.into(),
                    mode.into(),
                    env.cert.display().to_string(),
                ],
            )
            .await;
            assert!(out.contains("imaplib suite ok"), "{mode}: {out}");
        }
        // Implicit TLS with a fresh account, so the suite's expectations hold again.
        env.store()
            .put_mailbox(&postbay_store::directory::MailboxSpec {
                address: "carol@example.test".into(),
                password_hash: "{PLAIN}pw".into(),
                quota_bytes: 0,
                enabled: true,
                owner: None,
            })
            .await
            .unwrap();
        let out = python(
            "imaplib_suite.py",
            &[
                "127.0.0.1".into(),
                env.servers[0].tls_port.to_string(),
                "carol@example.test".into(),
                "pw".into(),
                "ssl".into(),
                env.cert.display().to_string(),
            ],
        )
        .await;
        assert!(out.contains("imaplib suite ok"), "ssl: {out}");
        env
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_fetches_appends_and_lists_over_plain_starttls_and_imaps() {
    if peer("curl").is_none() {
        return;
    }
    each_backend(test_limits(), |env| async move {
        let file = env.dir.path().join("upload.eml");
        let msg = message("from curl", "curl body");
        std::fs::write(&file, &msg).unwrap();
        let user = format!("{ALICE}:{ALICE_PASSWORD}");
        let port = env.port();
        let tls_port = env.servers[0].tls_port;
        let cert = env.cert.display().to_string();
        let curl = |args: Vec<String>| async move {
            let mut all = vec![
                "-sS".to_string(),
                "--max-time".into(),
                "30".into(),
                "-u".into(),
            ];
            all.push(format!("{ALICE}:{ALICE_PASSWORD}"));
            all.extend(args);
            run("curl", all).await
        };
        let _ = user;

        // APPEND by upload, plain.
        curl(vec![
            format!("imap://127.0.0.1:{port}/INBOX"),
            "-T".into(),
            file.display().to_string(),
        ])
        .await;
        // FETCH the message by UID: the exact bytes come back.
        let body = curl(vec![format!("imap://127.0.0.1:{port}/INBOX;UID=1")]).await;
        assert_eq!(body.as_bytes(), &msg[..], "plain fetch");
        // Custom commands.
        let out = curl(vec![
            format!("imap://127.0.0.1:{port}/INBOX"),
            "-X".into(),
            "FETCH 1 BODY[]".into(),
        ])
        .await;
        assert!(out.contains("* 1 FETCH (BODY[] {"), "{out}");
        let out = curl(vec![
            format!("imap://127.0.0.1:{port}/INBOX"),
            "-X".into(),
            "SEARCH SUBJECT curl".into(),
        ])
        .await;
        assert!(out.contains("* SEARCH 1"), "{out}");
        // LIST.
        let out = curl(vec![format!("imap://127.0.0.1:{port}/")]).await;
        assert!(out.contains("\\Sent") && out.contains("INBOX"), "{out}");
        // STARTTLS required, verified against the generated certificate.
        let body = curl(vec![
            "--ssl-reqd".into(),
            "--cacert".into(),
            cert.clone(),
            format!("imap://127.0.0.1:{port}/INBOX;UID=1"),
        ])
        .await;
        assert_eq!(body.as_bytes(), &msg[..], "starttls fetch");
        // Implicit TLS (993-style).
        let body = curl(vec![
            "--cacert".into(),
            cert.clone(),
            format!("imaps://127.0.0.1:{tls_port}/INBOX;UID=1"),
        ])
        .await;
        assert_eq!(body.as_bytes(), &msg[..], "imaps fetch");
        let out = curl(vec![
            "--cacert".into(),
            cert,
            format!("imaps://127.0.0.1:{tls_port}/INBOX"),
            "-X".into(),
            "STATUS INBOX (MESSAGES UNSEEN)".into(),
        ])
        .await;
        assert!(
            out.contains("* STATUS INBOX (MESSAGES 1 UNSEEN 0)"),
            "{out}"
        );
        env
    })
    .await;
}

fn gen_mbox_script() -> Option<PathBuf> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        here.join("../../../shared/peers/gen-mbox.py"),
        PathBuf::from("/work/shared/peers/gen-mbox.py"),
    ];
    let found = candidates.into_iter().find(|p| p.is_file());
    if found.is_none() {
        if require_peers() {
            panic!("POSTBAY_REQUIRE_PEERS=1 but shared/peers/gen-mbox.py is missing");
        }
        eprintln!("SKIP: shared/peers/gen-mbox.py not found");
    }
    found
}

fn mbsync_config(env: &Env, maildir: &Path) -> PathBuf {
    let config = format!(
        "IMAPAccount postbay\nHost 127.0.0.1\nPort {port}\nUser {ALICE}\nPass {ALICE_PASSWORD}\n\
SSLType STARTTLS\nCertificateFile {cert}\nAuthMechs PLAIN\n\n\
IMAPStore remote\nAccount postbay\n\n\
MaildirStore local\nPath {dir}/\nInbox {dir}/INBOX\nSubFolders Verbatim\n\n\
Channel sync\nFar :remote:\nNear :local:\nPatterns INBOX\nCreate Both\nExpunge Both\nSync All\nSyncState *\n",
        port = env.port(),
        cert = env.cert.display(),
        dir = maildir.display(),
    );
    let path = maildir.with_extension("mbsyncrc");
    std::fs::write(&path, config).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mbsync_syncs_a_mailbox_both_ways_without_differences() {
    if peer("mbsync").is_none() || peer("python3").is_none() {
        return;
    }
    let Some(gen) = gen_mbox_script() else { return };
    each_backend(test_limits(), |env| {
        let gen = gen.clone();
        async move {
            let root = env.dir.path();
            let mbox = root.join("source.mbox");
            run(
                "python3",
                vec![
                    gen.display().to_string(),
                    mbox.display().to_string(),
                    "300".into(),
                    "7".into(),
                ],
            )
            .await;
            let tools =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/maildir_tools.py");
            let tools = tools.display().to_string();
            let near = root.join("near");
            run(
                "python3",
                vec![
                    tools.clone(),
                    "from-mbox".into(),
                    mbox.display().to_string(),
                    near.display().to_string(),
                ],
            )
            .await;
            let imap_args = |folder: &str| -> Vec<String> {
                vec![
                    "127.0.0.1".into(),
                    env.port().to_string(),
                    ALICE.into(),
                    ALICE_PASSWORD.into(),
                    env.cert.display().to_string(),
                    folder.into(),
                ]
            };
            let compare = |dir: PathBuf| {
                let mut args = vec![
                    tools.clone(),
                    "compare".into(),
                    dir.join("INBOX").display().to_string(),
                ];
                args.extend(imap_args("INBOX"));
                args
            };

            // Push 300 messages up.
            let config = mbsync_config(&env, &near);
            run(
                "mbsync",
                vec![
                    "-q".into(),
                    "-c".into(),
                    config.display().to_string(),
                    "-a".into(),
                ],
            )
            .await;
            assert_eq!(
                env.store().count_messages(ALICE, "INBOX").await.unwrap(),
                300
            );
            let out = run("python3", compare(near.clone())).await;
            assert!(out.contains("same 300"), "{out}");

            // Changes on both sides: flags on the server, seen + deletions locally.
            let mut args = vec![tools.clone(), "imap-flag".into()];
            args.extend(imap_args("INBOX"));
            args.push("1:10".into());
            run("python3", args).await;
            run(
                "python3",
                vec![
                    tools.clone(),
                    "touch".into(),
                    near.join("INBOX").display().to_string(),
                    "20".into(),
                    "5".into(),
                ],
            )
            .await;
            run(
                "mbsync",
                vec![
                    "-q".into(),
                    "-c".into(),
                    config.display().to_string(),
                    "-a".into(),
                ],
            )
            .await;
            assert_eq!(
                env.store().count_messages(ALICE, "INBOX").await.unwrap(),
                295
            );
            let out = run("python3", compare(near.clone())).await;
            assert!(out.contains("same 295"), "{out}");
            // A second run changes nothing.
            run(
                "mbsync",
                vec![
                    "-q".into(),
                    "-c".into(),
                    config.display().to_string(),
                    "-a".into(),
                ],
            )
            .await;
            let out = run("python3", compare(near.clone())).await;
            assert!(out.contains("same 295"), "{out}");

            // Pull everything into a fresh Maildir.
            let fresh = root.join("fresh");
            std::fs::create_dir_all(&fresh).unwrap();
            let config = mbsync_config(&env, &fresh);
            // -Dn shows the protocol: isync turns COMPRESS=DEFLATE on when offered, so this
            // pull runs deflated (RFC 4978) through a client nobody here wrote.
            let trace = run(
                "mbsync",
                vec![
                    "-Dn".into(),
                    "-c".into(),
                    config.display().to_string(),
                    "-a".into(),
                ],
            )
            .await;
            assert!(
                trace.contains("COMPRESS DEFLATE") && trace.contains("OK DEFLATE active"),
                "mbsync did not compress: {}",
                &trace[..trace.len().min(2000)]
            );
            let out = run("python3", compare(fresh)).await;
            assert!(out.contains("same 295"), "{out}");
            env
        }
    })
    .await;
}

/// The local side of interimap: Dovecot's `imap` binary on a pipe (PREAUTH), as a normal
/// user: Dovecot refuses mail access as root.
struct LocalDovecot {
    conf: PathBuf,
    maildir: PathBuf,
    /// `setpriv` prefix when the test runs as root.
    as_user: Vec<String>,
}

impl LocalDovecot {
    async fn new(root: &Path) -> Option<LocalDovecot> {
        let imap = Path::new("/usr/lib/dovecot/imap");
        if !imap.is_file() {
            if require_peers() {
                panic!("POSTBAY_REQUIRE_PEERS=1 but /usr/lib/dovecot/imap is missing");
            }
            eprintln!("SKIP: Dovecot's imap binary is not installed");
            return None;
        }
        let root_user = run("id", vec!["-u".into()]).await.trim() == "0";
        if root_user {
            peer("setpriv")?;
        }
        let dir = root.join("dovecot");
        let maildir = dir.join("mail");
        for d in [&dir, &maildir, &dir.join("run"), &dir.join("state")] {
            std::fs::create_dir_all(d).unwrap();
        }
        let conf = dir.join("dovecot.conf");
        let mut text = format!(
            "mail_location = maildir:{mail}\nbase_dir = {run}\nstate_dir = {state}\n\
log_path = {log}\nssl = no\n",
            mail = maildir.display(),
            run = dir.join("run").display(),
            state = dir.join("state").display(),
            log = dir.join("dovecot.log").display(),
        );
        let mut as_user = Vec::new();
        if root_user {
            text.push_str("mail_uid = nobody\nmail_gid = nogroup\n");
            as_user = [
                "setpriv",
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
            ]
            .map(String::from)
            .to_vec();
            // The test's temporary directory is private to root.
            use std::os::unix::fs::PermissionsExt;
            let open = std::fs::Permissions::from_mode(0o755);
            std::fs::set_permissions(root, open.clone()).unwrap();
            std::fs::set_permissions(&dir, open).unwrap();
            std::fs::write(dir.join("dovecot.log"), "").unwrap();
            run(
                "chown",
                vec![
                    "-R".into(),
                    "nobody:nogroup".into(),
                    dir.display().to_string(),
                ],
            )
            .await;
        }
        std::fs::write(&conf, text).unwrap();
        Some(LocalDovecot {
            conf,
            maildir,
            as_user,
        })
    }

    /// The command interimap runs for `[local]` (split into words, no shell).
    fn command(&self) -> String {
        let mut words = self.as_user.clone();
        words.extend([
            "env".into(),
            "USER=nobody".into(),
            format!("HOME={}", self.maildir.display()),
            "/usr/lib/dovecot/imap".into(),
            "-c".into(),
            self.conf.display().to_string(),
        ]);
        words.join(" ")
    }

    /// Runs IMAP commands (each line gets a tag) against the local store; returns the
    /// transcript.
    async fn imap(&self, lines: &[&str]) -> String {
        use tokio::io::AsyncWriteExt;
        let words: Vec<String> = self.command().split(' ').map(String::from).collect();
        let mut child = tokio::process::Command::new(&words[0])
            .args(&words[1..])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut script = String::new();
        for (i, line) in lines.iter().chain(&["LOGOUT"]).enumerate() {
            script.push_str(&format!("t{i} {line}\r\n"));
        }
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(script.as_bytes()).await.unwrap();
        drop(stdin);
        let out = child.wait_with_output().await.unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Message files in a local folder (`INBOX` or a Maildir++ subfolder).
    fn files(&self, folder: &str) -> Vec<String> {
        let dir = match folder {
            "INBOX" => self.maildir.clone(),
            other => self.maildir.join(format!(".{other}")),
        };
        let mut names = Vec::new();
        for sub in ["cur", "new"] {
            if let Ok(entries) = std::fs::read_dir(dir.join(sub)) {
                names
                    .extend(entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()));
            }
        }
        names
    }
}

async fn interimap(config: &Path, debug: bool) -> String {
    let mut args = vec![format!("--config={}", config.display())];
    if debug {
        args.push("--debug".into());
    }
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        tokio::process::Command::new("interimap")
            .args(&args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("interimap finishes")
    .unwrap();
    // interimap logs to stderr.
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "interimap failed:\n{log}");
    assert!(
        !log.contains("ERROR"),
        "interimap reported an error:\n{log}"
    );
    log
}

/// interimap (Debian's `interimap`) keeps two IMAP servers in sync and insists on QRESYNC
/// (RFC 7162), CONDSTORE's UNCHANGEDSINCE, UIDPLUS, LITERAL+ and ENABLE; it also turns on
/// COMPRESS. Synced against a local Dovecot, changes on either side cross over, and the
/// resync after remote changes is the one-round-trip `SELECT ... (QRESYNC ...)` with
/// `VANISHED (EARLIER)` that phones use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interimap_syncs_both_ways_with_qresync() {
    if peer("interimap").is_none() {
        return;
    }
    each_backend(test_limits(), |env| async move {
        let root = env.dir.path().to_path_buf();
        let Some(local) = LocalDovecot::new(&root).await else {
            return env;
        };
        for i in 1..=20 {
            deliver(
                env.store(),
                ALICE,
                "INBOX",
                message(&format!("remote {i}"), "body"),
            )
            .await;
        }
        let config = root.join("interimap.conf");
        std::fs::write(
            &config,
            format!(
                "database = {db}\n\n[local]\ntype = tunnel\ncommand = {command}\n\n\
[remote]\ntype = imap\nhost = 127.0.0.1\nport = {port}\nSTARTTLS = YES\n\
username = {ALICE}\npassword = {ALICE_PASSWORD}\nSSL_CAfile = {cert}\nSSL_hostname =\n",
                db = root.join("interimap.db").display(),
                command = local.command(),
                port = env.port(),
                cert = env.cert.display(),
            ),
        )
        .unwrap();

        // First run: everything comes down.
        let log = interimap(&config, true).await;
        assert!(log.contains("ENABLE QRESYNC"), "{log}");
        assert!(log.contains("OK DEFLATE active"), "{log}");
        assert_eq!(local.files("INBOX").len(), 20);

        // Changes on the server: a flag, an expunge, a new message.
        let mut raw = Raw::login(env.port(), ALICE, ALICE_PASSWORD).await;
        raw.cmd("a SELECT INBOX").await;
        raw.cmd("b UID STORE 2 +FLAGS (\\Flagged)").await;
        raw.cmd("c UID STORE 3 +FLAGS (\\Deleted)").await;
        raw.cmd("d EXPUNGE").await;
        deliver(env.store(), ALICE, "INBOX", message("remote 21", "body")).await;
        // Changes on the local side: a flag, a new message, a new folder.
        let local_changes = local
            .imap(&[
                "SELECT INBOX",
                "STORE 1 +FLAGS (\\Answered)",
                "APPEND INBOX {52+}\r\nSubject: from local\r\nFrom: a@example.test\r\n\r\nhello\r\n",
                "CREATE Projects",
            ])
            .await;
        let tagged_ok = local_changes
            .lines()
            .filter(|l| l.starts_with('t') && l.contains(" OK "))
            .count();
        assert_eq!(tagged_ok, 5, "{local_changes}");

        let log = interimap(&config, true).await;
        assert!(log.contains("SELECT INBOX (QRESYNC ("), "{log}");
        assert!(log.contains("VANISHED (EARLIER) 3"), "{log}");

        // Postbay now has the local message, the local flag and the local folder.
        assert_eq!(
            env.store().count_messages(ALICE, "INBOX").await.unwrap(),
            21
        );
        let answered = raw.cmd("e UID SEARCH ANSWERED").await;
        assert!(answered.iter().any(|l| l == "* SEARCH 1"), "{answered:?}");
        let from_local = raw.cmd("f UID SEARCH SUBJECT \"from local\"").await;
        assert!(
            from_local.iter().any(|l| l.starts_with("* SEARCH ") && l.len() > 9),
            "{from_local:?}"
        );
        let list = raw.cmd("g LIST \"\" Projects").await;
        assert!(list.iter().any(|l| l.contains("Projects")), "{list:?}");
        // The local store has the server's flag, expunge and new message.
        let files = local.files("INBOX");
        assert_eq!(files.len(), 21, "{files:?}");
        assert_eq!(files.iter().filter(|f| f.ends_with(":2,F")).count(), 1, "{files:?}");

        // A third run has nothing to send to the server. (It may still rewrite the local
        // flags of the message it appended last time: that message's MODSEQ is above the
        // HIGHESTMODSEQ interimap recorded before its APPEND, as it would be on Dovecot.)
        let log = interimap(&config, true).await;
        let commands: Vec<&str> = log
            .lines()
            .filter(|l| l.starts_with("remote") && l.contains(": C: "))
            .collect();
        assert!(
            !commands
                .iter()
                .any(|l| l.contains(" APPEND ") || l.contains(" STORE ") || l.contains("EXPUNGE")),
            "{log}"
        );
        let files = local.files("INBOX");
        assert_eq!(files.len(), 21, "{files:?}");
        assert_eq!(files.iter().filter(|f| f.ends_with(":2,F")).count(), 1, "{files:?}");
        raw.cmd("h LOGOUT").await;
        env
    })
    .await;
}

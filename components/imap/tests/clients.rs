//! Real clients against the in-process server: Python's imaplib (plain, STARTTLS, implicit
//! TLS), curl (imap:// with and without STARTTLS, imaps://) and mbsync (isync) syncing a
//! few hundred messages both ways.

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

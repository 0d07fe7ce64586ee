//! Real clients against the real server: Python's poplib and curl, over plaintext, STLS and
//! implicit TLS with the server's self-signed certificate.

use std::net::SocketAddr;
use std::process::Output;

use base64::Engine;
use serde_json::Value;

use crate::common::*;

const POPLIB_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/clients/poplib_client.py"
);

fn unb64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap()
}

async fn poplib(
    python: &std::path::Path,
    server: &Server,
    mode: &str,
    user: &str,
    password: &str,
    action: &[&str],
) -> Value {
    let port = match mode {
        "ssl" => server.tls.port(),
        _ => server.plain.port(),
    };
    let out = tokio::process::Command::new(python)
        .arg(POPLIB_SCRIPT)
        .args(["127.0.0.1", &port.to_string(), mode, user, password])
        .args(action)
        .env("POP3_CAFILE", &server.cert_pem)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}: poplib {mode} {action:?} failed: {}",
        server.backend,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_poplib() {
    let Some(python) = client("python3") else {
        return;
    };
    for backend in backends() {
        let server = Server::start(&backend).await;
        let name = server.backend;
        let uidls = server.expected_uidls(ALICE).await;
        let total: u64 = EXPECTED.iter().map(|m| m.len() as u64).sum();

        for mode in ["plain", "stls", "ssl"] {
            let seen = poplib(&python, &server, mode, ALICE, ALICE_PASS, &["inspect"]).await;
            assert!(
                seen["welcome"].as_str().unwrap().starts_with("+OK"),
                "{seen}"
            );
            assert_eq!(seen["stat"], serde_json::json!([3, total]), "{name} {mode}");
            let capa: Vec<&str> = seen["capa"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            for cap in ["TOP", "UIDL", "USER", "SASL"] {
                assert!(capa.contains(&cap), "{name} {mode}: {capa:?}");
            }
            assert_eq!(
                capa.contains(&"STLS"),
                mode == "plain",
                "{name} {mode}: {capa:?}"
            );
            let listed: Vec<u64> = seen["list"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p[1].as_u64().unwrap())
                .collect();
            let want: Vec<u64> = EXPECTED.iter().map(|m| m.len() as u64).collect();
            assert_eq!(listed, want, "{name} {mode}");
            let got_uidls: Vec<&str> = seen["uidl"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p[1].as_str().unwrap())
                .collect();
            assert_eq!(got_uidls, uidls, "{name} {mode}");
            assert_eq!(seen["uidl_one"], format!("+OK 1 {}", uidls[0]).as_str());
            for (i, retr) in seen["retr"].as_array().unwrap().iter().enumerate() {
                // poplib's octet count (after unstuffing) equals LIST's size.
                assert_eq!(
                    retr["octets"].as_u64().unwrap(),
                    listed[i],
                    "{name} {mode} #{i}"
                );
                assert_eq!(
                    String::from_utf8_lossy(&unb64(&retr["b64"])),
                    String::from_utf8_lossy(EXPECTED[i]),
                    "{name} {mode} #{i}"
                );
            }
            assert_eq!(
                unb64(&seen["top"][0]),
                b"From: a@remote.test\r\nTo: alice@example.test\r\nSubject: first\r\n\r\nHello Alice.\r\n"
            );
            assert_eq!(unb64(&seen["top"][2]), EXPECTED[2]);
        }

        // SHA512-CRYPT user, password with spaces, over implicit TLS; AUTH PLAIN too.
        let bob = poplib(&python, &server, "ssl", BOB, BOB_PASS, &["inspect"]).await;
        assert_eq!(bob["stat"][0], 1, "{name}");
        let bob = poplib(&python, &server, "stls", BOB, BOB_PASS, &["auth-plain"]).await;
        assert!(
            bob["login"].as_str().unwrap().starts_with("+OK Logged in"),
            "{bob}"
        );
        let bad = poplib(
            &python,
            &server,
            "plain",
            BOB,
            "two words",
            &["bad-password"],
        )
        .await;
        assert_eq!(bad["error"], "-ERR [AUTH] Authentication failed", "{name}");

        // DELE then RSET removes nothing.
        let rset = poplib(
            &python,
            &server,
            "plain",
            ALICE,
            ALICE_PASS,
            &["delete-rset", "1"],
        )
        .await;
        assert_eq!(rset["stat_after"][0], 3, "{rset}");
        assert_eq!(server.count(ALICE).await, 3, "{name}");

        // DELE 1 and 3, QUIT: both gone for good, message 2 keeps its id.
        let deleted = poplib(
            &python,
            &server,
            "plain",
            ALICE,
            ALICE_PASS,
            &["delete", "1", "3"],
        )
        .await;
        assert_eq!(
            deleted["stat_after"],
            serde_json::json!([1, EXPECTED[1].len()]),
            "{deleted}"
        );
        assert!(
            deleted["quit"]
                .as_str()
                .unwrap()
                .ends_with("(1 messages left)"),
            "{deleted}"
        );
        assert_eq!(server.count(ALICE).await, 1, "{name}");
        let after = poplib(&python, &server, "plain", ALICE, ALICE_PASS, &["inspect"]).await;
        assert_eq!(after["uidl"], serde_json::json!([[1, uidls[1]]]), "{name}");
        assert_eq!(unb64(&after["retr"][0]["b64"]), EXPECTED[1]);
        server.stop().await;
    }
}

async fn curl(curl: &std::path::Path, args: &[&str]) -> Output {
    tokio::process::Command::new(curl)
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .await
        .unwrap()
}

fn stdout_ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "curl {what}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn url(scheme: &str, addr: SocketAddr, path: &str) -> String {
    format!("{scheme}://127.0.0.1:{}/{path}", addr.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_client() {
    let Some(curl_bin) = client("curl") else {
        return;
    };
    let credentials = format!("{ALICE}:{ALICE_PASS}");
    for backend in backends() {
        let server = Server::start(&backend).await;
        let name = server.backend;
        let cacert = server.cert_pem.to_str().unwrap().to_string();

        // LIST over plaintext (curl authenticates with AUTH PLAIN and a continuation).
        let out = curl(
            &curl_bin,
            &[&url("pop3", server.plain, ""), "-v", "-u", &credentials],
        )
        .await;
        let listing = stdout_ok(&out, "LIST");
        let trace = String::from_utf8_lossy(&out.stderr);
        assert!(
            trace.contains("> AUTH PLAIN\r\n< + \r\n") || trace.contains("> AUTH PLAIN\n< + \n"),
            "{trace}"
        );
        let want: String = EXPECTED
            .iter()
            .enumerate()
            .map(|(i, m)| format!("{} {}\r\n", i + 1, m.len()))
            .collect();
        assert_eq!(listing, want, "{name}");

        // RETR over plaintext, STLS (--ssl-reqd, AUTH with an initial response) and implicit
        // TLS (pop3s).
        let out = curl(
            &curl_bin,
            &[&url("pop3", server.plain, "1"), "-u", &credentials],
        )
        .await;
        assert_eq!(
            stdout_ok(&out, "RETR plain").as_bytes(),
            EXPECTED[0],
            "{name}"
        );
        let out = curl(
            &curl_bin,
            &[
                &url("pop3", server.plain, "2"),
                "--ssl-reqd",
                "--cacert",
                &cacert,
                "--sasl-ir",
                "-v",
                "-u",
                &credentials,
            ],
        )
        .await;
        let trace = String::from_utf8_lossy(&out.stderr);
        assert!(trace.contains("> STLS"), "{trace}");
        assert!(
            trace.contains("> AUTH PLAIN AG"),
            "initial response: {trace}"
        );
        assert_eq!(
            stdout_ok(&out, "RETR STLS").as_bytes(),
            EXPECTED[1],
            "{name}"
        );
        let out = curl(
            &curl_bin,
            &[
                &url("pop3s", server.tls, "3"),
                "--cacert",
                &cacert,
                "-u",
                &credentials,
            ],
        )
        .await;
        assert_eq!(
            stdout_ok(&out, "RETR pop3s").as_bytes(),
            EXPECTED[2],
            "{name}"
        );
        // The certificate is really checked: without --cacert curl refuses it.
        let out = curl(
            &curl_bin,
            &[&url("pop3s", server.tls, ""), "-u", &credentials],
        )
        .await;
        assert!(
            !out.status.success(),
            "{name}: untrusted certificate accepted"
        );

        // Wrong password: CURLE_LOGIN_DENIED.
        let out = curl(
            &curl_bin,
            &[
                &url("pop3", server.plain, ""),
                "-u",
                &format!("{ALICE}:nope"),
            ],
        )
        .await;
        assert_eq!(
            out.status.code(),
            Some(67),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        // DELE through a custom request; it takes effect at curl's QUIT.
        let out = curl(
            &curl_bin,
            &[
                &url("pop3", server.plain, "2"),
                "-X",
                "DELE",
                "-I",
                "-u",
                &credentials,
            ],
        )
        .await;
        stdout_ok(&out, "DELE");
        assert_eq!(server.count(ALICE).await, 2, "{name}");
        let out = curl(
            &curl_bin,
            &[
                &url("pop3s", server.tls, ""),
                "--cacert",
                &cacert,
                "-u",
                &credentials,
            ],
        )
        .await;
        let listing = stdout_ok(&out, "LIST after DELE");
        assert_eq!(
            listing,
            format!("1 {}\r\n2 {}\r\n", EXPECTED[0].len(), EXPECTED[2].len()),
            "{name}"
        );
        server.stop().await;
    }
}

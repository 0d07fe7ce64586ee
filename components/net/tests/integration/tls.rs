use std::path::Path;

use postbay_net::{client_config_trusting, listener, TlsProvider, TlsSettings};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Writes a fresh self-signed pair for `name` as a kubernetes.io/tls layout and
/// returns the certificate PEM.
fn write_pair(dir: &Path, name: &str) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
    cert.pem()
}

/// Serves one TLS echo session per accepted connection, fetching the acceptor
/// per connection as real servers do.
async fn spawn_tls_echo(provider: TlsProvider) -> std::net::SocketAddr {
    let tcp = listener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = tcp.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener::accept(&tcp).await;
            let acceptor = provider.acceptor();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut buf = [0u8; 4];
                if tls.read_exact(&mut buf).await.is_ok() {
                    let _ = tls.write_all(&buf).await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    addr
}

/// Handshakes as a client trusting `trusted_pem`; returns the leaf the server sent.
async fn handshake(
    addr: std::net::SocketAddr,
    trusted_pem: &str,
    name: &str,
) -> Result<CertificateDer<'static>, std::io::Error> {
    let config = client_config_trusting(trusted_pem.as_bytes()).unwrap();
    let connector = TlsConnector::from(config);
    let tcp = TcpStream::connect(addr).await?;
    let server_name = ServerName::try_from(name.to_owned()).unwrap();
    let mut tls = connector.connect(server_name, tcp).await?;
    tls.write_all(b"ping").await?;
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).await?;
    assert_eq!(&buf, b"ping");
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    Ok(leaf.into_owned())
}

fn leaf_of(pem: &str) -> CertificateDer<'static> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn self_signed_handshake_and_persistence() {
    let dir = tempfile::tempdir().unwrap();
    let settings = TlsSettings {
        self_signed_names: vec!["mail.test".into()],
        self_signed_dir: Some(dir.path().join("selfsigned")),
        ..TlsSettings::default()
    };
    let provider = TlsProvider::new(settings.clone()).await.unwrap();
    let pem = std::fs::read_to_string(dir.path().join("selfsigned/cert.pem")).unwrap();
    let addr = spawn_tls_echo(provider).await;

    assert_eq!(
        handshake(addr, &pem, "mail.test").await.unwrap(),
        leaf_of(&pem)
    );
    // 127.0.0.1 is always a SAN.
    assert_eq!(
        handshake(addr, &pem, "127.0.0.1").await.unwrap(),
        leaf_of(&pem)
    );
    // A name not in the certificate fails verification.
    assert!(handshake(addr, &pem, "other.test").await.is_err());

    // Second start reuses the persisted certificate, so pinned clients keep working.
    let again = TlsProvider::new(settings).await.unwrap();
    let pem_again = std::fs::read_to_string(dir.path().join("selfsigned/cert.pem")).unwrap();
    assert_eq!(pem, pem_again);
    let addr_again = spawn_tls_echo(again).await;
    assert_eq!(
        handshake(addr_again, &pem, "mail.test").await.unwrap(),
        leaf_of(&pem)
    );
}

#[tokio::test]
async fn self_signed_defaults_to_localhost() {
    let dir = tempfile::tempdir().unwrap();
    let provider = TlsProvider::new(TlsSettings {
        self_signed_dir: Some(dir.path().to_owned()),
        ..TlsSettings::default()
    })
    .await
    .unwrap();
    assert!(provider.server_config().alpn_protocols.is_empty());
    let pem = std::fs::read_to_string(dir.path().join("cert.pem")).unwrap();
    let addr = spawn_tls_echo(provider).await;
    assert_eq!(
        handshake(addr, &pem, "localhost").await.unwrap(),
        leaf_of(&pem)
    );
    assert_eq!(
        handshake(addr, &pem, "127.0.0.1").await.unwrap(),
        leaf_of(&pem)
    );

    // Without a directory nothing is written and a fresh certificate is served.
    let ephemeral = TlsProvider::new(TlsSettings::default()).await.unwrap();
    let addr = spawn_tls_echo(ephemeral).await;
    assert!(handshake(addr, &pem, "localhost").await.is_err());
}

#[tokio::test]
async fn pem_files_reload_to_new_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pem_a = write_pair(dir.path(), "mail.test");
    let provider = TlsProvider::new(TlsSettings {
        cert_path: Some(dir.path().join("tls.crt")),
        key_path: Some(dir.path().join("tls.key")),
        ..TlsSettings::default()
    })
    .await
    .unwrap();
    let addr = spawn_tls_echo(provider.clone()).await;
    assert_eq!(
        handshake(addr, &pem_a, "mail.test").await.unwrap(),
        leaf_of(&pem_a)
    );

    let pem_b = write_pair(dir.path(), "mail.test");
    provider.reload_now().unwrap();
    assert_eq!(
        handshake(addr, &pem_b, "mail.test").await.unwrap(),
        leaf_of(&pem_b)
    );
    // A client that only trusts A now fails.
    assert!(handshake(addr, &pem_a, "mail.test").await.is_err());
}

#[tokio::test]
async fn secret_directory_and_combined_pem() {
    let dir = tempfile::tempdir().unwrap();
    // kubernetes.io/tls layout: cert_path is the mount directory.
    let pem = write_pair(dir.path(), "mail.test");
    let provider = TlsProvider::new(TlsSettings {
        cert_path: Some(dir.path().to_owned()),
        ..TlsSettings::default()
    })
    .await
    .unwrap();
    let addr = spawn_tls_echo(provider).await;
    assert_eq!(
        handshake(addr, &pem, "mail.test").await.unwrap(),
        leaf_of(&pem)
    );

    // Combined PEM (certificate and key in one file) via cert_path only.
    let combined = dir.path().join("combined.pem");
    let key = std::fs::read_to_string(dir.path().join("tls.key")).unwrap();
    std::fs::write(&combined, format!("{pem}{key}")).unwrap();
    TlsProvider::new(TlsSettings {
        cert_path: Some(combined),
        ..TlsSettings::default()
    })
    .await
    .unwrap();
}

/// Legacy key encodings (PKCS#1 RSA, SEC1 EC) from openssl-made fixtures.
#[tokio::test]
async fn pkcs1_rsa_and_sec1_ec_keys() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for kind in ["rsa", "ec"] {
        let provider = TlsProvider::new(TlsSettings {
            cert_path: Some(fixtures.join(format!("{kind}.crt"))),
            key_path: Some(fixtures.join(format!("{kind}.key"))),
            ..TlsSettings::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{kind}: {e}"));
        let pem = std::fs::read_to_string(fixtures.join(format!("{kind}.crt"))).unwrap();
        let addr = spawn_tls_echo(provider).await;
        let leaf = handshake(addr, &pem, "mail.test").await;
        assert_eq!(
            leaf.unwrap_or_else(|e| panic!("{kind}: {e}")),
            leaf_of(&pem)
        );
    }
}

#[tokio::test]
async fn broken_pem_fails_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tls.crt"), "garbage").unwrap();
    std::fs::write(dir.path().join("tls.key"), "garbage").unwrap();
    let err = TlsProvider::new(TlsSettings {
        cert_path: Some(dir.path().to_owned()),
        ..TlsSettings::default()
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("no certificate"), "{err}");

    let missing = TlsProvider::new(TlsSettings {
        cert_path: Some(dir.path().join("absent.crt")),
        ..TlsSettings::default()
    })
    .await
    .unwrap_err();
    assert!(missing.to_string().contains("absent.crt"), "{missing}");
}

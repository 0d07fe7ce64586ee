//! Server TLS: certificates from PEM files (reloaded when they change, as with
//! cert-manager renewals) or a self-signed certificate for development.

mod expiry;
mod material;
mod self_signed;
mod watch;

pub use material::client_config_trusting;

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use watch::{PemFiles, Watched};

/// How often PEM files are checked for changes.
const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Where the server certificate comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain (leaf first), or a directory with `tls.crt` and
    /// `tls.key` such as a mounted kubernetes.io/tls Secret. Unset: self-signed.
    pub cert_path: Option<PathBuf>,
    /// PEM private key (PKCS#8, RSA or EC). Defaults to `tls.key` in the
    /// `cert_path` directory, or to the `cert_path` file itself (combined PEM).
    pub key_path: Option<PathBuf>,
    /// Names for the self-signed certificate; empty means `localhost`.
    /// 127.0.0.1 is always added.
    pub self_signed_names: Vec<String>,
    /// Where to keep the self-signed `cert.pem`/`key.pem` across restarts.
    /// To regenerate (e.g. after changing the names), delete the files.
    pub self_signed_dir: Option<PathBuf>,
}

/// Errors loading or building TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The PEM text is malformed.
    #[error("{origin}: invalid PEM: {source}")]
    Pem {
        origin: String,
        #[source]
        source: io::Error,
    },
    /// The PEM text holds no certificate.
    #[error("{0}: no certificate found")]
    NoCertificate(String),
    /// The PEM text holds no private key.
    #[error("{0}: no private key found")]
    NoPrivateKey(String),
    /// rustls refused the material, e.g. an unsupported key or a key that does
    /// not match the certificate.
    #[error("{origin}: {source}")]
    Rustls {
        origin: String,
        #[source]
        source: rustls::Error,
    },
    /// Generating the self-signed certificate failed.
    #[error("generating self-signed certificate: {0}")]
    SelfSigned(#[from] rcgen::Error),
    /// The settings contradict each other.
    #[error("invalid TLS settings: {0}")]
    Settings(&'static str),
}

/// Hands out the current TLS configuration; cheap to clone.
///
/// File-backed providers poll their files every 5 s in a background task, which
/// ends once the last clone is dropped.
#[derive(Debug, Clone)]
pub struct TlsProvider {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    current: RwLock<Arc<ServerConfig>>,
    /// `None` for self-signed certificates, which never change.
    watched: Option<Mutex<Watched>>,
}

impl TlsProvider {
    /// Loads or generates the certificate described by `settings`. Must be called
    /// within a Tokio runtime (it spawns the file watcher). Does blocking file
    /// I/O once, at startup.
    pub async fn new(settings: TlsSettings) -> Result<Self, TlsError> {
        Self::with_poll_interval(settings, POLL_INTERVAL)
    }

    fn with_poll_interval(settings: TlsSettings, every: Duration) -> Result<Self, TlsError> {
        match (&settings.cert_path, &settings.key_path) {
            (Some(cert), key) => {
                let files = PemFiles::resolve(cert, key.as_deref());
                let (watched, config) = Watched::load(files.clone())?;
                tracing::info!(cert = %files.cert.display(), key = %files.key.display(), "loaded TLS certificate");
                let shared = Arc::new(Shared {
                    current: RwLock::new(config),
                    watched: Some(Mutex::new(watched)),
                });
                spawn_watcher(Arc::downgrade(&shared), every);
                Ok(Self { shared })
            }
            (None, Some(_)) => Err(TlsError::Settings("key_path is set without cert_path")),
            (None, None) => {
                let dir = settings.self_signed_dir.as_deref();
                let (cert, key) = self_signed::obtain(&settings.self_signed_names, dir)?;
                let origin = match dir {
                    Some(dir) => dir.display().to_string(),
                    None => "generated self-signed certificate".to_owned(),
                };
                let config = material::server_config(&cert, &key, &origin)?;
                Ok(Self {
                    shared: Arc::new(Shared {
                        current: RwLock::new(config),
                        watched: None,
                    }),
                })
            }
        }
    }

    /// An acceptor for the current certificate; fetch one per connection so
    /// renewals apply to new connections.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.server_config())
    }

    /// The current server configuration.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        let current = self.shared.current.read();
        Arc::clone(&current.unwrap_or_else(PoisonError::into_inner))
    }

    /// Re-reads the PEM files now, even if they look unchanged. On error the
    /// previous configuration stays in use. A no-op for self-signed certificates.
    pub fn reload_now(&self) -> Result<(), TlsError> {
        self.shared.reload(true).map(|_| ())
    }
}

impl Shared {
    /// Swaps in a new configuration if the files changed; true if it did.
    fn reload(&self, force: bool) -> Result<bool, TlsError> {
        let Some(watched) = &self.watched else {
            return Ok(false);
        };
        let mut watched = watched.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(config) = watched.check(force)? else {
            return Ok(false);
        };
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = config;
        tracing::info!(cert = %watched.files().cert.display(), "reloaded TLS certificate");
        Ok(true)
    }
}

/// Polls for file changes until the provider is dropped.
fn spawn_watcher(shared: Weak<Shared>, every: Duration) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is immediate; files were just loaded
        let mut last_error: Option<String> = None;
        loop {
            ticker.tick().await;
            let Some(shared) = shared.upgrade() else {
                break;
            };
            let result = tokio::task::spawn_blocking(move || shared.reload(false)).await;
            match result {
                Ok(Ok(_)) => last_error = None,
                Ok(Err(e)) => {
                    // Report each distinct problem once, not every poll.
                    let message = e.to_string();
                    if last_error.as_deref() != Some(message.as_str()) {
                        tracing::error!(error = %message, "TLS certificate reload failed; keeping the previous certificate");
                        last_error = Some(message);
                    }
                }
                Err(e) => tracing::error!(error = %e, "TLS certificate reload task failed"),
            }
        }
        tracing::debug!("TLS certificate watcher stopped");
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn write_pair(dir: &Path, names: &[&str]) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
        std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
    }

    #[cfg(unix)]
    fn symlink(target: &str, link: &Path) {
        std::os::unix::fs::symlink(target, link).unwrap();
    }

    async fn wait_for_change(provider: &TlsProvider, old: &Arc<ServerConfig>) -> bool {
        for _ in 0..100 {
            if !Arc::ptr_eq(&provider.server_config(), old) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Emulates a kubernetes.io/tls Secret volume update: `tls.crt -> ..data/tls.crt`,
    /// `..data -> ..v1`, then an atomic swap of `..data` to `..v2`.
    #[cfg(unix)]
    #[tokio::test]
    async fn watcher_follows_secret_symlink_swap() {
        let mount = tempfile::tempdir().unwrap();
        let root = mount.path();
        write_pair(&root.join("..v1"), &["a.example"]);
        symlink("..v1", &root.join("..data"));
        symlink("..data/tls.crt", &root.join("tls.crt"));
        symlink("..data/tls.key", &root.join("tls.key"));

        let settings = TlsSettings {
            cert_path: Some(root.to_owned()),
            ..TlsSettings::default()
        };
        let provider =
            TlsProvider::with_poll_interval(settings, Duration::from_millis(20)).unwrap();
        let first = provider.server_config();

        write_pair(&root.join("..v2"), &["b.example"]);
        symlink("..v2", &root.join("..data_tmp"));
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        assert!(
            wait_for_change(&provider, &first).await,
            "swap not picked up"
        );
    }

    #[tokio::test]
    async fn broken_update_keeps_previous_config() {
        let dir = tempfile::tempdir().unwrap();
        write_pair(dir.path(), &["a.example"]);
        let settings = TlsSettings {
            cert_path: Some(dir.path().to_owned()),
            ..TlsSettings::default()
        };
        let provider =
            TlsProvider::with_poll_interval(settings, Duration::from_millis(20)).unwrap();
        let first = provider.server_config();

        std::fs::write(dir.path().join("tls.crt"), "not a certificate").unwrap();
        assert!(!wait_for_change(&provider, &first).await);
        assert!(matches!(
            provider.reload_now().unwrap_err(),
            TlsError::NoCertificate(_)
        ));
        // Key of one pair with the certificate of another is refused too.
        let other = tempfile::tempdir().unwrap();
        write_pair(other.path(), &["b.example"]);
        std::fs::copy(other.path().join("tls.crt"), dir.path().join("tls.crt")).unwrap();
        assert!(matches!(
            provider.reload_now().unwrap_err(),
            TlsError::Rustls { .. }
        ));
        assert!(Arc::ptr_eq(&provider.server_config(), &first));
        // Completing the update (key too) is picked up by the watcher.
        std::fs::copy(other.path().join("tls.key"), dir.path().join("tls.key")).unwrap();
        assert!(wait_for_change(&provider, &first).await);
    }

    #[tokio::test]
    async fn key_without_cert_is_rejected() {
        let settings = TlsSettings {
            key_path: Some("/nonexistent".into()),
            ..TlsSettings::default()
        };
        assert!(matches!(
            TlsProvider::new(settings).await.unwrap_err(),
            TlsError::Settings(_)
        ));
    }

    #[tokio::test]
    async fn watcher_stops_when_provider_dropped() {
        let dir = tempfile::tempdir().unwrap();
        write_pair(dir.path(), &["a.example"]);
        let settings = TlsSettings {
            cert_path: Some(dir.path().to_owned()),
            ..TlsSettings::default()
        };
        let provider =
            TlsProvider::with_poll_interval(settings, Duration::from_millis(10)).unwrap();
        let weak = Arc::downgrade(&provider.shared);
        drop(provider);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(weak.upgrade().is_none());
    }
}

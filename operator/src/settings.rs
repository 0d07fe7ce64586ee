//! The operator's own settings: mail host names for DNS guidance, external-dns output, the
//! metrics listener, leader election and the DKIM key mirror. Read from a YAML file given with
//! `postbay operator --settings FILE` and overridden by that command's flags; kept apart from
//! the mail components' configuration, which refuses keys it does not know.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use postbay_reconcile::MailHosts;
use serde::Deserialize;

use crate::{Error, Result};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    pub mail: MailSettings,
    /// Also write the records as external-dns `DNSEndpoint` objects owned by the MailDomain.
    pub external_dns: bool,
    /// A resolver (`ip:port`) to check whether each DNS record is published; absent: not
    /// checked, `published` stays empty.
    pub dns_check_server: Option<SocketAddr>,
    /// /metrics, /healthz and /readyz.
    pub metrics_addr: SocketAddr,
    pub leader_election: LeaderSettings,
    /// Reported in Events and held in the Lease; the pod name in a cluster.
    pub identity: String,
    /// Watch and write only this namespace's resources and Secrets; absent: every
    /// namespace. Scoped, the operator needs a Role in that namespace rather than a
    /// ClusterRole that can read every Secret in the cluster (docs/operator.md).
    pub watch_namespace: Option<String>,
    /// Where the smtp pods find the private keys (docs/operator.md, "DKIM keys for the smtp
    /// pods").
    pub dkim_keys: DkimKeysSettings,
}

/// The one Secret that mirrors every applied DkimKey's private key, which the smtp pods
/// mount as a directory: they then sign without any access to the Secret API.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct DkimKeysSettings {
    /// The smtp pods' namespace (a pod mounts only Secrets of its own); default: the
    /// operator's (POD_NAMESPACE), else `default`.
    pub namespace: String,
    pub secret_name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct MailSettings {
    /// MX hosts in order of preference; empty: the hostname of the mail components.
    pub mx: Vec<String>,
    pub submission: Option<String>,
    pub imap: Option<String>,
    /// POP3 host; default: the IMAP host.
    pub pop3: Option<String>,
    /// Publish the POP3 SRV records as "not offered" (RFC 6186 target `.`).
    pub pop3_disabled: bool,
    pub tls_rpt_address: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct LeaderSettings {
    pub enabled: bool,
    /// Namespace of the Lease; default: the pod's namespace (POD_NAMESPACE), else `default`.
    pub namespace: String,
    pub lease_name: String,
    pub lease_duration_seconds: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mail: MailSettings::default(),
            external_dns: false,
            dns_check_server: None,
            metrics_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            leader_election: LeaderSettings::default(),
            identity: std::env::var("POD_NAME")
                .ok()
                .or_else(|| std::env::var("HOSTNAME").ok())
                .unwrap_or_else(|| "postbay-operator".into()),
            watch_namespace: None,
            dkim_keys: DkimKeysSettings::default(),
        }
    }
}

impl Default for DkimKeysSettings {
    fn default() -> Self {
        DkimKeysSettings {
            namespace: pod_namespace(),
            secret_name: "postbay-dkim-keys".into(),
        }
    }
}

/// The operator's own namespace, from the Downward API; `default` outside a pod.
fn pod_namespace() -> String {
    std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "default".into())
}

impl Default for LeaderSettings {
    fn default() -> Self {
        LeaderSettings {
            enabled: true,
            namespace: pod_namespace(),
            lease_name: "postbay-operator".into(),
            lease_duration_seconds: 15,
        }
    }
}

impl Settings {
    /// Defaults, overlaid by `file` when given.
    pub fn load(file: Option<&Path>) -> Result<Settings> {
        let Some(file) = file else {
            return Ok(Settings::default());
        };
        let text = std::fs::read_to_string(file)
            .map_err(|e| Error::Settings(format!("reading {}: {e}", file.display())))?;
        serde_yaml::from_str(&text).map_err(|e| Error::Settings(format!("{}: {e}", file.display())))
    }

    /// The host names DNS guidance uses; `fallback` (the configured hostname) fills gaps.
    pub fn mail_hosts(&self, fallback: &str) -> MailHosts {
        let mail = &self.mail;
        let first = mail.mx.first().map(String::as_str).unwrap_or(fallback);
        let mut hosts = MailHosts::single(first);
        if !mail.mx.is_empty() {
            hosts.mx = mail.mx.clone();
        }
        hosts.submission = mail.submission.clone().unwrap_or_else(|| first.into());
        hosts.imap = mail.imap.clone().unwrap_or_else(|| first.into());
        hosts.pop3 = if mail.pop3_disabled {
            None
        } else {
            Some(mail.pop3.clone().unwrap_or_else(|| hosts.imap.clone()))
        };
        hosts.tls_rpt_address = mail.tls_rpt_address.clone();
        hosts
    }

    pub fn lease_duration(&self) -> Duration {
        Duration::from_secs(u64::from(
            self.leader_election.lease_duration_seconds.max(2),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_settings_file_fills_the_mail_hosts() {
        let settings: Settings = serde_yaml::from_str(
            "mail:\n  mx: [mx1.example.net, mx2.example.net]\n  imap: imap.example.net\n  pop3Disabled: true\nexternalDns: true\n",
        )
        .unwrap();
        let hosts = settings.mail_hosts("fallback.example.net");
        assert_eq!(hosts.mx, ["mx1.example.net", "mx2.example.net"]);
        assert_eq!(hosts.submission, "mx1.example.net");
        assert_eq!(hosts.imap, "imap.example.net");
        assert_eq!(hosts.pop3, None);
        assert!(settings.external_dns);
        assert!(settings.leader_election.enabled);

        assert_eq!(settings.watch_namespace, None);
        let scoped: Settings = serde_yaml::from_str("watchNamespace: mail\n").unwrap();
        assert_eq!(scoped.watch_namespace.as_deref(), Some("mail"));
        assert_eq!(scoped.dkim_keys.secret_name, "postbay-dkim-keys");
        let keys: Settings =
            serde_yaml::from_str("dkimKeys:\n  namespace: mail\n  secretName: keys\n").unwrap();
        assert_eq!(keys.dkim_keys.namespace, "mail");
        assert_eq!(keys.dkim_keys.secret_name, "keys");

        let plain = Settings::default().mail_hosts("mail.example.org");
        assert_eq!(plain, MailHosts::single("mail.example.org"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(serde_yaml::from_str::<Settings>("mial: {}\n").is_err());
    }
}

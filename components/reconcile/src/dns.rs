//! The DNS records a mail domain needs published, computed from the resource, the mail host
//! names in configuration and the domain's DKIM keys. Pure: no lookups, no store.
//!
//! Names are written without the trailing dot, values in zone-file presentation form (host
//! names in values are absolute, with the dot; TXT data quoted and split into strings of at
//! most 255 bytes, RFC 1035 section 3.3.14, as RFC 6376 section 3.6.2.2 expects for long keys).

use postbay_api::{
    DkimAlgorithm, DmarcPolicy, DnsRecord, DnsRecordType, MailDomainSpec, MtaStsMode,
};
use postbay_store::DkimKeyRow;

/// Longest character-string in a TXT record.
pub const TXT_STRING_MAX: usize = 255;
/// `max_age` of the MTA-STS policy: one week, within RFC 8461 section 3.2's advice.
pub const MTA_STS_MAX_AGE: u32 = 604_800;

/// The host names clients and other servers use to reach Postbay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailHosts {
    /// MX targets in order of preference (published as 10, 20, ...).
    pub mx: Vec<String>,
    /// Message submission (465 implicit TLS, 587 STARTTLS).
    pub submission: String,
    /// IMAP (993 implicit TLS, 143 STARTTLS).
    pub imap: String,
    /// POP3 (995, 110); `None` publishes the RFC 6186 "not offered" target `.`.
    pub pop3: Option<String>,
    /// Where TLS-RPT (RFC 8460) reports go; falls back to the DMARC report address, then
    /// `postmaster@<domain>`.
    pub tls_rpt_address: Option<String>,
}

impl MailHosts {
    /// Every role on one host, the shape of a small installation and of `postbay dev`.
    pub fn single(host: &str) -> MailHosts {
        MailHosts {
            mx: vec![host.to_string()],
            submission: host.to_string(),
            imap: host.to_string(),
            pop3: Some(host.to_string()),
            tls_rpt_address: None,
        }
    }
}

/// Every record the domain should publish: MX, SPF, one DKIM TXT per key, DMARC, MTA-STS
/// (when configured), TLS-RPT and the client SRV records.
pub fn domain_records(
    spec: &MailDomainSpec,
    hosts: &MailHosts,
    dkim_keys: &[DkimKeyRow],
) -> Vec<DnsRecord> {
    let domain = spec.domain.as_str();
    let mut out = Vec::new();
    for (i, host) in hosts.mx.iter().enumerate() {
        let preference = 10 * (i + 1);
        out.push(record(
            DnsRecordType::Mx,
            domain,
            format!("{preference} {}", absolute(host)),
            "mx",
        ));
    }
    // RFC 7208: the MX hosts send the domain's mail too; nothing else may.
    out.push(record(
        DnsRecordType::Txt,
        domain,
        txt("v=spf1 mx -all"),
        "spf",
    ));
    for key in dkim_keys.iter().filter(|k| k.enabled) {
        out.push(dkim_record(
            domain,
            &key.selector,
            algorithm_from_row(&key.algorithm),
            &key.public_key,
        ));
    }
    out.push(record(
        DnsRecordType::Txt,
        &format!("_dmarc.{domain}"),
        txt(&dmarc_value(spec)),
        "dmarc",
    ));
    if let Some(mta_sts) = &spec.mta_sts {
        let policy = mta_sts_policy(mta_sts.mode, &hosts.mx);
        out.push(record(
            DnsRecordType::Txt,
            &format!("_mta-sts.{domain}"),
            txt(&format!("v=STSv1; id={}", mta_sts_id(&policy))),
            "mta-sts",
        ));
        // RFC 8461 section 3.3: the policy is fetched from this host over HTTPS with a
        // certificate valid for it.
        let web = hosts.mx.first().unwrap_or(&hosts.submission);
        out.push(record(
            DnsRecordType::Cname,
            &format!("mta-sts.{domain}"),
            absolute(web),
            "mta-sts-policy-host: serve https://mta-sts.<domain>/.well-known/mta-sts.txt",
        ));
    }
    let tls_rpt = hosts
        .tls_rpt_address
        .clone()
        .or_else(|| spec.dmarc.as_ref().and_then(|d| d.report_address.clone()))
        .unwrap_or_else(|| format!("postmaster@{domain}"));
    out.push(record(
        DnsRecordType::Txt,
        &format!("_smtp._tls.{domain}"),
        txt(&format!("v=TLSRPTv1; rua=mailto:{tls_rpt}")),
        "tls-rpt",
    ));
    out.extend(srv_records(domain, hosts));
    out
}

/// RFC 6186 client autoconfiguration, with RFC 8314 section 5.1's preference for implicit TLS
/// (lower priority number) over STARTTLS.
fn srv_records(domain: &str, hosts: &MailHosts) -> Vec<DnsRecord> {
    let services: [(&str, u16, u16, Option<&String>); 6] = [
        ("_submissions._tcp", 0, 465, Some(&hosts.submission)),
        ("_submission._tcp", 10, 587, Some(&hosts.submission)),
        ("_imaps._tcp", 0, 993, Some(&hosts.imap)),
        ("_imap._tcp", 10, 143, Some(&hosts.imap)),
        ("_pop3s._tcp", 0, 995, hosts.pop3.as_ref()),
        ("_pop3._tcp", 10, 110, hosts.pop3.as_ref()),
    ];
    services
        .into_iter()
        .map(|(service, priority, port, host)| {
            // RFC 6186 section 4: target "." means the service is not offered.
            let value = match host {
                Some(host) => format!("{priority} 1 {port} {}", absolute(host)),
                None => "0 0 0 .".to_string(),
            };
            let purpose = format!(
                "srv:{}",
                service
                    .trim_start_matches('_')
                    .split('.')
                    .next()
                    .unwrap_or(service)
            );
            record(
                DnsRecordType::Srv,
                &format!("{service}.{domain}"),
                value,
                &purpose,
            )
        })
        .collect()
}

/// `<selector>._domainkey.<domain>` carrying the public key (RFC 6376 section 3.6.1,
/// RFC 8463 section 4.2 for `k=ed25519`).
pub fn dkim_record(
    domain: &str,
    selector: &str,
    algorithm: DkimAlgorithm,
    public_key: &str,
) -> DnsRecord {
    let k = match algorithm {
        DkimAlgorithm::RsaSha256 => "rsa",
        DkimAlgorithm::Ed25519Sha256 => "ed25519",
    };
    record(
        DnsRecordType::Txt,
        &format!("{selector}._domainkey.{domain}"),
        txt(&format!("v=DKIM1; k={k}; p={public_key}")),
        &format!("dkim:{selector}"),
    )
}

/// RFC 7489 section 6.3: `p=` always, `rua=` when reports are wanted.
fn dmarc_value(spec: &MailDomainSpec) -> String {
    let dmarc = spec.dmarc.clone().unwrap_or_default();
    let policy = match dmarc.policy {
        DmarcPolicy::None => "none",
        DmarcPolicy::Quarantine => "quarantine",
        DmarcPolicy::Reject => "reject",
    };
    match dmarc.report_address {
        Some(rua) => format!("v=DMARC1; p={policy}; rua=mailto:{rua}"),
        None => format!("v=DMARC1; p={policy}"),
    }
}

/// The policy file served at `https://mta-sts.<domain>/.well-known/mta-sts.txt`
/// (RFC 8461 section 3.2), CRLF line endings as the RFC's ABNF has them.
pub fn mta_sts_policy(mode: MtaStsMode, mx: &[String]) -> String {
    let mode = match mode {
        MtaStsMode::None => "none",
        MtaStsMode::Testing => "testing",
        MtaStsMode::Enforce => "enforce",
    };
    let mut policy = format!("version: STSv1\r\nmode: {mode}\r\n");
    for host in mx {
        policy.push_str(&format!("mx: {}\r\n", host.trim_end_matches('.')));
    }
    policy.push_str(&format!("max_age: {MTA_STS_MAX_AGE}\r\n"));
    policy
}

/// The `id=` of the `_mta-sts` record: it must change whenever the policy does (RFC 8461
/// section 3.1), and derive from nothing else, so it is a hash of the policy rather than a
/// timestamp that would change on every reconcile.
pub fn mta_sts_id(policy: &str) -> String {
    // FNV-1a, 64 bits: stable across Rust releases, unlike `DefaultHasher`.
    let hash = policy.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// TXT data in presentation form: quoted strings of at most [`TXT_STRING_MAX`] bytes each.
pub fn txt(data: &str) -> String {
    if data.is_empty() {
        return "\"\"".to_string();
    }
    data.as_bytes()
        .chunks(TXT_STRING_MAX)
        .map(|chunk| {
            let text = String::from_utf8_lossy(chunk);
            format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn absolute(host: &str) -> String {
    format!("{}.", host.trim_end_matches('.'))
}

fn algorithm_from_row(name: &str) -> DkimAlgorithm {
    if name.starts_with("ed25519") {
        DkimAlgorithm::Ed25519Sha256
    } else {
        DkimAlgorithm::RsaSha256
    }
}

fn record(type_: DnsRecordType, name: &str, value: String, purpose: &str) -> DnsRecord {
    DnsRecord {
        type_,
        name: name.to_string(),
        value,
        purpose: purpose.to_string(),
        published: None,
    }
}

/// One zone-file line per record, for `postbay apply` and the docs.
pub fn zone_line(record: &DnsRecord) -> String {
    let type_ = match record.type_ {
        DnsRecordType::A => "A",
        DnsRecordType::Aaaa => "AAAA",
        DnsRecordType::Cname => "CNAME",
        DnsRecordType::Mx => "MX",
        DnsRecordType::Txt => "TXT",
        DnsRecordType::Tlsa => "TLSA",
        DnsRecordType::Srv => "SRV",
    };
    format!("{}. IN {type_} {}", record.name, record.value)
}

#[cfg(test)]
mod tests;

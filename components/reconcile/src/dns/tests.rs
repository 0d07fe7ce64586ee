use postbay_api::{DmarcSpec, MtaStsSpec};

use super::*;

fn spec(domain: &str) -> MailDomainSpec {
    MailDomainSpec {
        domain: domain.into(),
        catch_all: None,
        dmarc: None,
        mta_sts: None,
        spam_filter: None,
    }
}

fn find<'a>(records: &'a [DnsRecord], purpose: &str) -> &'a DnsRecord {
    records
        .iter()
        .find(|r| r.purpose == purpose)
        .unwrap_or_else(|| panic!("no {purpose} record in {records:#?}"))
}

fn key_row(selector: &str, algorithm: &str, public_key: &str) -> DkimKeyRow {
    DkimKeyRow {
        domain: "example.com".into(),
        selector: selector.into(),
        algorithm: algorithm.into(),
        public_key: public_key.into(),
        private_key_ref: "file:/x".into(),
        enabled: true,
        owner: None,
    }
}

#[test]
fn a_plain_domain_gets_mx_spf_dmarc_tlsrpt_and_srv() {
    let records = domain_records(
        &spec("example.com"),
        &MailHosts::single("mail.example.com"),
        &[],
    );
    let table: Vec<(DnsRecordType, &str, &str, &str)> = vec![
        (
            DnsRecordType::Mx,
            "example.com",
            "10 mail.example.com.",
            "mx",
        ),
        (
            DnsRecordType::Txt,
            "example.com",
            "\"v=spf1 mx -all\"",
            "spf",
        ),
        (
            DnsRecordType::Txt,
            "_dmarc.example.com",
            "\"v=DMARC1; p=none\"",
            "dmarc",
        ),
        (
            DnsRecordType::Txt,
            "_smtp._tls.example.com",
            "\"v=TLSRPTv1; rua=mailto:postmaster@example.com\"",
            "tls-rpt",
        ),
        (
            DnsRecordType::Srv,
            "_submissions._tcp.example.com",
            "0 1 465 mail.example.com.",
            "srv:submissions",
        ),
        (
            DnsRecordType::Srv,
            "_submission._tcp.example.com",
            "10 1 587 mail.example.com.",
            "srv:submission",
        ),
        (
            DnsRecordType::Srv,
            "_imaps._tcp.example.com",
            "0 1 993 mail.example.com.",
            "srv:imaps",
        ),
        (
            DnsRecordType::Srv,
            "_imap._tcp.example.com",
            "10 1 143 mail.example.com.",
            "srv:imap",
        ),
        (
            DnsRecordType::Srv,
            "_pop3s._tcp.example.com",
            "0 1 995 mail.example.com.",
            "srv:pop3s",
        ),
        (
            DnsRecordType::Srv,
            "_pop3._tcp.example.com",
            "10 1 110 mail.example.com.",
            "srv:pop3",
        ),
    ];
    let got: Vec<(DnsRecordType, &str, &str, &str)> = records
        .iter()
        .map(|r| {
            (
                r.type_,
                r.name.as_str(),
                r.value.as_str(),
                r.purpose.as_str(),
            )
        })
        .collect();
    assert_eq!(got, table);
    assert!(records.iter().all(|r| r.published.is_none()));
}

#[test]
fn several_mx_hosts_get_increasing_preferences_and_pop3_can_be_off() {
    let hosts = MailHosts {
        mx: vec!["mx1.example.net".into(), "mx2.example.net.".into()],
        submission: "smtp.example.net".into(),
        imap: "imap.example.net".into(),
        pop3: None,
        tls_rpt_address: Some("tls@example.net".into()),
    };
    let records = domain_records(&spec("example.com"), &hosts, &[]);
    let mx: Vec<&str> = records
        .iter()
        .filter(|r| r.type_ == DnsRecordType::Mx)
        .map(|r| r.value.as_str())
        .collect();
    assert_eq!(mx, ["10 mx1.example.net.", "20 mx2.example.net."]);
    assert_eq!(find(&records, "srv:pop3s").value, "0 0 0 .");
    assert_eq!(
        find(&records, "srv:imaps").value,
        "0 1 993 imap.example.net."
    );
    assert_eq!(
        find(&records, "srv:submission").value,
        "10 1 587 smtp.example.net."
    );
    assert_eq!(
        find(&records, "tls-rpt").value,
        "\"v=TLSRPTv1; rua=mailto:tls@example.net\""
    );
}

#[test]
fn dmarc_policy_and_reports_and_tlsrpt_fallback() {
    let mut s = spec("example.com");
    s.dmarc = Some(DmarcSpec {
        policy: DmarcPolicy::Reject,
        report_address: Some("dmarc@example.com".into()),
    });
    let records = domain_records(&s, &MailHosts::single("mail.example.com"), &[]);
    assert_eq!(
        find(&records, "dmarc").value,
        "\"v=DMARC1; p=reject; rua=mailto:dmarc@example.com\""
    );
    assert_eq!(
        find(&records, "tls-rpt").value,
        "\"v=TLSRPTv1; rua=mailto:dmarc@example.com\""
    );
}

#[test]
fn mta_sts_record_and_policy_host_follow_the_policy() {
    let mut s = spec("example.com");
    s.mta_sts = Some(MtaStsSpec {
        mode: MtaStsMode::Enforce,
    });
    let hosts = MailHosts::single("mail.example.com");
    let records = domain_records(&s, &hosts, &[]);
    let policy = mta_sts_policy(MtaStsMode::Enforce, &hosts.mx);
    assert_eq!(
        policy,
        "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 604800\r\n"
    );
    let id = mta_sts_id(&policy);
    assert_eq!(id.len(), 16);
    assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
    let record = find(&records, "mta-sts");
    assert_eq!(record.name, "_mta-sts.example.com");
    assert_eq!(record.value, format!("\"v=STSv1; id={id}\""));
    let host = records
        .iter()
        .find(|r| r.name == "mta-sts.example.com")
        .unwrap();
    assert_eq!(host.type_, DnsRecordType::Cname);
    assert_eq!(host.value, "mail.example.com.");
    // Same policy, same id; another mode, another id.
    assert_eq!(
        mta_sts_id(&mta_sts_policy(MtaStsMode::Enforce, &hosts.mx)),
        id
    );
    assert_ne!(
        mta_sts_id(&mta_sts_policy(MtaStsMode::Testing, &hosts.mx)),
        id
    );
}

#[test]
fn dkim_records_per_key_split_into_255_byte_strings() {
    let long_key = "A".repeat(392); // a 2048-bit SPKI in base64
    let keys = [
        key_row("rsa2026", "rsa-sha256", &long_key),
        key_row(
            "ed2026",
            "ed25519-sha256",
            "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
        ),
        DkimKeyRow {
            enabled: false,
            ..key_row("old", "rsa-sha256", "x")
        },
    ];
    let records = domain_records(
        &spec("example.com"),
        &MailHosts::single("m.example.com"),
        &keys,
    );
    let rsa = find(&records, "dkim:rsa2026");
    assert_eq!(rsa.name, "rsa2026._domainkey.example.com");
    let data = format!("v=DKIM1; k=rsa; p={long_key}");
    assert_eq!(
        rsa.value,
        format!("\"{}\" \"{}\"", &data[..255], &data[255..])
    );
    let ed = find(&records, "dkim:ed2026");
    assert_eq!(
        ed.value,
        "\"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\""
    );
    assert!(!records.iter().any(|r| r.purpose == "dkim:old"));
}

#[test]
fn txt_quotes_and_escapes() {
    assert_eq!(txt(""), "\"\"");
    assert_eq!(txt("a\"b\\c"), "\"a\\\"b\\\\c\"");
    let exact = "x".repeat(255);
    assert_eq!(txt(&exact), format!("\"{exact}\""));
    assert_eq!(txt(&format!("{exact}y")), format!("\"{exact}\" \"y\""));
}

#[test]
fn zone_lines_are_absolute() {
    let r = dkim_record("example.com", "s1", DkimAlgorithm::Ed25519Sha256, "AAAA");
    assert_eq!(
        zone_line(&r),
        "s1._domainkey.example.com. IN TXT \"v=DKIM1; k=ed25519; p=AAAA\""
    );
}

//! Optional output for external-dns: the records of a MailDomain as one `DNSEndpoint`
//! (externaldns.k8s.io/v1alpha1) owned by it, so a cluster running external-dns publishes
//! them without any mail pod holding DNS credentials. Where the CRD is not installed, a
//! condition says so and the rest of the reconcile goes on.

use std::collections::BTreeMap;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::Resource;
use postbay_api::{Condition, DnsRecord, DnsRecordType, MailDomain};
use serde_json::{json, Value};

use crate::context::Context;
use crate::status::{self, MANAGER};
use crate::{Error, Result};

/// The condition this module reports.
pub const CONDITION: &str = "DNSEndpointPublished";
/// TTL of the records written.
pub const TTL: u32 = 3600;

/// Applies the DNSEndpoint `<name>-mail` and returns the condition describing the result.
pub async fn publish(
    d: &MailDomain,
    records: &[DnsRecord],
    previous: &[Condition],
    ctx: &Context,
) -> Result<Condition> {
    let generation = d.metadata.generation;
    let namespace = d.metadata.namespace.clone().unwrap_or_default();
    let name = format!("{}-mail", d.metadata.name.as_deref().unwrap_or_default());
    let gvk = GroupVersionKind::gvk("externaldns.k8s.io", "v1alpha1", "DNSEndpoint");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "dnsendpoints");
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &namespace, &resource);
    let owner = d
        .controller_owner_ref(&())
        .map(|o| vec![o])
        .unwrap_or_default();
    let object = json!({
        "apiVersion": "externaldns.k8s.io/v1alpha1",
        "kind": "DNSEndpoint",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "ownerReferences": owner,
            "labels": {"app.kubernetes.io/managed-by": "postbay-operator"},
        },
        "spec": {"endpoints": endpoints(records)},
    });
    let params = PatchParams::apply(MANAGER).force();
    match api.patch(&name, &params, &Patch::Apply(&object)).await {
        Ok(_) => Ok(status::condition(
            CONDITION,
            previous,
            generation,
            true,
            "Published",
            &format!(
                "DNSEndpoint {name} holds {} endpoints",
                endpoints(records).len()
            ),
        )),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(status::condition(
            CONDITION,
            previous,
            generation,
            false,
            "CRDNotInstalled",
            "externalDns is on, but the DNSEndpoint CRD (externaldns.k8s.io) is not installed",
        )),
        Err(e) => Err(Error::Kube(e)),
    }
}

/// One endpoint per name and type, targets in external-dns' form: TXT data unquoted and
/// joined (external-dns quotes and splits it), host names without the trailing dot.
pub fn endpoints(records: &[DnsRecord]) -> Vec<Value> {
    let mut grouped: BTreeMap<(String, &'static str), Vec<String>> = BTreeMap::new();
    for record in records {
        let (type_, target) = match record.type_ {
            DnsRecordType::Txt => ("TXT", unquote(&record.value)),
            DnsRecordType::Mx => ("MX", record.value.trim_end_matches('.').to_string()),
            DnsRecordType::Srv => ("SRV", record.value.trim_end_matches('.').to_string()),
            DnsRecordType::Cname => ("CNAME", record.value.trim_end_matches('.').to_string()),
            DnsRecordType::A => ("A", record.value.clone()),
            DnsRecordType::Aaaa => ("AAAA", record.value.clone()),
            DnsRecordType::Tlsa => continue, // external-dns has no TLSA
        };
        grouped
            .entry((record.name.clone(), type_))
            .or_default()
            .push(target);
    }
    grouped
        .into_iter()
        .map(|((name, type_), targets)| {
            json!({"dnsName": name, "recordType": type_, "targets": targets, "recordTTL": TTL})
        })
        .collect()
}

/// `"a" "b"` → `ab`, undoing the presentation form of `postbay_reconcile::dns::txt`.
pub(crate) fn unquote(value: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => inside = !inside,
            '\\' if inside => out.extend(chars.next()),
            c if inside => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use postbay_reconcile::dns::{domain_records, txt};
    use postbay_reconcile::MailHosts;

    use super::*;

    #[test]
    fn records_become_endpoints_grouped_by_name_and_type() {
        let spec = postbay_api::MailDomainSpec {
            domain: "example.com".into(),
            catch_all: None,
            dmarc: None,
            mta_sts: None,
            spam_filter: None,
        };
        let mut hosts = MailHosts::single("mx1.example.com");
        hosts.mx.push("mx2.example.com".into());
        let eps = endpoints(&domain_records(&spec, &hosts, &[]));
        let mx = eps.iter().find(|e| e["recordType"] == "MX").unwrap();
        assert_eq!(mx["dnsName"], "example.com");
        assert_eq!(
            mx["targets"],
            json!(["10 mx1.example.com", "20 mx2.example.com"])
        );
        let spf = eps
            .iter()
            .find(|e| e["recordType"] == "TXT" && e["dnsName"] == "example.com")
            .unwrap();
        assert_eq!(spf["targets"], json!(["v=spf1 mx -all"]));
        let srv = eps
            .iter()
            .find(|e| e["dnsName"] == "_imaps._tcp.example.com")
            .unwrap();
        assert_eq!(srv["targets"], json!(["0 1 993 mx1.example.com"]));
    }

    #[test]
    fn unquote_undoes_txt() {
        let long = "k".repeat(300);
        for data in ["v=spf1 mx -all", "a\"b\\c", long.as_str()] {
            assert_eq!(unquote(&txt(data)), data);
        }
    }
}

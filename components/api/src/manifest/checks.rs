//! Content checks on typed resources: the syntax rules the CRD schema can only approximate.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{DocumentProblem, Resource};
use crate::quota::parse_quota;
use crate::validate::{
    validate_address, validate_address_or_local_part, validate_domain, validate_object_name,
    validate_secret_key, validate_selector,
};
use crate::{DkimKeySpec, MailAliasSpec, MailDomainSpec, MailboxSpec};

pub(super) fn check(resource: &Resource) -> Result<(), DocumentProblem> {
    check_metadata(resource.metadata())?;
    match resource {
        Resource::Domain(r) => check_domain(&r.spec),
        Resource::Mailbox(r) => check_mailbox(&r.spec),
        Resource::Alias(r) => check_alias(&r.spec),
        Resource::DkimKey(r) => check_dkim(&r.spec),
        Resource::Secret(s) => {
            let keys = s.data.iter().flat_map(|d| d.keys().map(|k| ("data", k)));
            let string_keys = s
                .string_data
                .iter()
                .flat_map(|d| d.keys().map(|k| ("stringData", k)));
            for (map, key) in keys.chain(string_keys) {
                validate_secret_key(key).map_err(|e| e.at(format!("{map}.{key}")))?;
            }
            Ok(())
        }
    }
}

fn check_metadata(meta: &ObjectMeta) -> Result<(), DocumentProblem> {
    let name = meta
        .name
        .as_deref()
        .ok_or(DocumentProblem::Missing("metadata.name"))?;
    validate_object_name(name).map_err(|e| e.at("metadata.name"))?;
    if let Some(namespace) = meta.namespace.as_deref() {
        validate_object_name(namespace).map_err(|e| e.at("metadata.namespace"))?;
    }
    Ok(())
}

fn check_domain(spec: &MailDomainSpec) -> Result<(), DocumentProblem> {
    validate_domain(&spec.domain).map_err(|e| e.at("spec.domain"))?;
    if let Some(catch_all) = &spec.catch_all {
        validate_address_or_local_part(catch_all).map_err(|e| e.at("spec.catchAll"))?;
    }
    if let Some(report) = spec.dmarc.as_ref().and_then(|d| d.report_address.as_ref()) {
        validate_address(report).map_err(|e| e.at("spec.dmarc.reportAddress"))?;
    }
    Ok(())
}

fn check_mailbox(spec: &MailboxSpec) -> Result<(), DocumentProblem> {
    validate_address(&spec.address).map_err(|e| e.at("spec.address"))?;
    let secret = &spec.password_secret_ref;
    validate_object_name(&secret.name).map_err(|e| e.at("spec.passwordSecretRef.name"))?;
    validate_secret_key(&secret.key).map_err(|e| e.at("spec.passwordSecretRef.key"))?;
    if let Some(quota) = &spec.quota {
        parse_quota(quota).map_err(|source| DocumentProblem::Quota {
            field: "spec.quota".into(),
            source,
        })?;
    }
    for (i, alias) in spec.aliases.iter().enumerate() {
        validate_address(alias).map_err(|e| e.at(format!("spec.aliases[{i}]")))?;
    }
    Ok(())
}

fn check_alias(spec: &MailAliasSpec) -> Result<(), DocumentProblem> {
    validate_address(&spec.address).map_err(|e| e.at("spec.address"))?;
    if spec.destinations.is_empty() {
        return Err(DocumentProblem::Rule {
            field: "spec.destinations".into(),
            message: "must list at least one address".into(),
        });
    }
    for (i, destination) in spec.destinations.iter().enumerate() {
        validate_address(destination).map_err(|e| e.at(format!("spec.destinations[{i}]")))?;
    }
    Ok(())
}

fn check_dkim(spec: &DkimKeySpec) -> Result<(), DocumentProblem> {
    validate_domain(&spec.domain).map_err(|e| e.at("spec.domain"))?;
    validate_selector(&spec.selector).map_err(|e| e.at("spec.selector"))?;
    if let Some(secret) = &spec.secret_ref {
        validate_object_name(&secret.name).map_err(|e| e.at("spec.secretRef.name"))?;
    }
    Ok(())
}

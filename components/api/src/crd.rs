//! The CustomResourceDefinitions, for `kubectl apply` and the Helm chart.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::{DkimKey, MailAlias, MailDomain, Mailbox};

/// All four CRDs, in dependency order (domains first).
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        MailDomain::crd(),
        Mailbox::crd(),
        MailAlias::crd(),
        DkimKey::crd(),
    ]
}

/// All four CRDs as one YAML stream, documents separated by `---`.
pub fn crds_yaml() -> String {
    crds()
        .iter()
        .map(|crd| {
            // A CRD is plain maps, strings and numbers: serialization cannot fail.
            serde_yaml::to_string(crd).expect("CRD serializes to YAML")
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

//! manifests/operator/ parses as the Kubernetes types it claims to be, runs the operator
//! subcommand, and grants what the controllers call and no more.

use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::Deserialize;

fn docs(file: &str) -> Vec<serde_yaml::Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../manifests/operator")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_yaml::Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn typed<T: serde::de::DeserializeOwned>(value: &serde_yaml::Value) -> T {
    serde_yaml::from_value(value.clone()).unwrap()
}

#[test]
fn every_manifest_is_a_valid_object() {
    let _: Namespace = typed(&docs("namespace.yaml")[0]);
    let _: ServiceAccount = typed(&docs("serviceaccount.yaml")[0]);
    let settings: ConfigMap = typed(&docs("settings.yaml")[0]);
    let file = &settings.data.unwrap()["settings.yaml"];
    let parsed: postbay_operator::Settings =
        serde_yaml::from_str(file).expect("the ConfigMap holds valid settings");
    assert!(parsed.leader_election.enabled);

    let deployment: Deployment = typed(&docs("deployment.yaml")[0]);
    let pod = deployment.spec.template.spec.unwrap();
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("postbay-operator")
    );
    let container = &pod.containers[0];
    assert_eq!(container.args.as_ref().unwrap()[0], "operator");
    let env: Vec<&str> = container
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    for needed in ["POD_NAME", "POD_NAMESPACE", "POSTBAY_DATABASE_URL"] {
        assert!(
            env.contains(&needed),
            "{needed} missing from the Deployment"
        );
    }
    let probe = container
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(probe.path.as_deref(), Some("/readyz"));
}

#[test]
fn rbac_covers_the_controllers_and_nothing_broad() {
    let rbac = docs("rbac.yaml");
    let cluster: ClusterRole = typed(&rbac[0]);
    let _: ClusterRoleBinding = typed(&rbac[1]);
    let leader: Role = typed(&rbac[2]);
    let _: RoleBinding = typed(&rbac[3]);
    let rules = cluster.rules.unwrap();
    let allows = |group: &str, resource: &str, verb: &str| {
        rules.iter().any(|r| {
            r.api_groups.iter().flatten().any(|g| g == group)
                && r.resources.iter().flatten().any(|x| x == resource)
                && r.verbs.iter().any(|v| v == verb)
        })
    };
    for kind in ["maildomains", "mailboxes", "mailaliases", "dkimkeys"] {
        for verb in ["get", "list", "watch", "patch"] {
            assert!(allows("postbay.dev", kind, verb), "{kind} {verb}");
        }
        assert!(allows("postbay.dev", &format!("{kind}/status"), "patch"));
        assert!(
            !allows("postbay.dev", kind, "delete"),
            "the operator never deletes user objects"
        );
    }
    for verb in ["get", "list", "watch", "create", "patch"] {
        assert!(allows("", "secrets", verb), "secrets {verb}");
    }
    assert!(
        !allows("", "secrets", "delete"),
        "generated Secrets go by ownerReferences"
    );
    assert!(allows("events.k8s.io", "events", "create"));
    assert!(
        rules.iter().all(|r| r.verbs.iter().all(|v| v != "*")),
        "no wildcard verbs"
    );
    let lease = &leader.rules.unwrap()[0];
    assert_eq!(
        lease.resources.as_deref(),
        Some(&["leases".to_string()][..])
    );
}

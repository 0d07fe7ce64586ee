//! manifests/operator/ parses as the Kubernetes types it claims to be, runs the operator
//! subcommand, and grants what the controllers call and no more; the smtp pods of
//! manifests/mail/ mount the DKIM key mirror the operator's settings name.

use std::path::Path;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::Deserialize;

fn docs(file: &str) -> Vec<serde_yaml::Value> {
    docs_in("operator", file)
}

fn docs_in(folder: &str, file: &str) -> Vec<serde_yaml::Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../manifests")
        .join(folder)
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

    // The key mirror: that one Secret, written by apply, never read back.
    let mirror: Role = typed(&rbac[4]);
    let binding: RoleBinding = typed(&rbac[5]);
    assert_eq!(binding.role_ref.name, "postbay-operator-dkim-keys");
    let settings = operator_settings();
    assert_eq!(
        mirror.metadata.namespace.as_deref(),
        Some(settings.dkim_keys.namespace.as_str())
    );
    let rules = mirror.rules.unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(
        rules[0].resource_names.as_deref(),
        Some(&[settings.dkim_keys.secret_name.clone()][..])
    );
    assert_eq!(rules[0].verbs, ["create", "patch"]);
}

/// The settings in the operator's ConfigMap.
fn operator_settings() -> postbay_operator::Settings {
    let settings: ConfigMap = typed(&docs("settings.yaml")[0]);
    serde_yaml::from_str(&settings.data.unwrap()["settings.yaml"]).unwrap()
}

#[test]
fn smtp_pods_mount_the_dkim_key_mirror() {
    let settings = operator_settings();
    let smtp: StatefulSet = typed(&docs_in("mail", "smtp.yaml")[0]);
    assert_eq!(
        smtp.metadata.namespace.as_deref(),
        Some(settings.dkim_keys.namespace.as_str()),
        "a pod can mount only a Secret of its own namespace"
    );
    let pod = smtp.spec.template.spec.unwrap();
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "dkim")
        .expect("a dkim volume");
    let secret = volume.secret.as_ref().unwrap();
    assert_eq!(
        secret.secret_name.as_deref(),
        Some(settings.dkim_keys.secret_name.as_str())
    );
    assert_eq!(secret.optional, Some(true), "pods start before any key");
    let container = &pod.containers[0];
    let mount = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "dkim")
        .unwrap();
    assert_eq!(mount.mount_path, "/etc/postbay/dkim");
    assert_eq!(mount.read_only, Some(true));
    assert!(
        mount.sub_path.is_none(),
        "subPath mounts are never refreshed"
    );
    let env = container.env.iter().flatten();
    let dir = env
        .clone()
        .find(|e| e.name == "POSTBAY_DKIM__KEYS_DIR")
        .and_then(|e| e.value.as_deref());
    assert_eq!(dir, Some("/etc/postbay/dkim"));
}

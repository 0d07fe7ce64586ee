//! The generated CRDs carry what the API server needs to enforce our rules.

use postbay_api::{crds, crds_yaml};
use regex::Regex;
use serde_json::Value;

fn crd_json(kind: &str) -> Value {
    let crd = crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"));
    serde_json::to_value(crd).unwrap()
}

#[test]
fn stream_holds_four_crds() {
    let yaml = crds_yaml();
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let names: Vec<&str> = docs
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "maildomains.postbay.dev",
            "mailboxes.postbay.dev",
            "mailaliases.postbay.dev",
            "dkimkeys.postbay.dev"
        ]
    );
    for doc in &docs {
        assert_eq!(doc["kind"], "CustomResourceDefinition");
        assert_eq!(doc["spec"]["group"], "postbay.dev");
        assert_eq!(doc["spec"]["scope"], "Namespaced");
        assert_eq!(doc["spec"]["versions"][0]["name"], "v1alpha1");
        assert_eq!(
            doc["spec"]["versions"][0]["subresources"]["status"],
            serde_json::json!({})
        );
    }
}

#[test]
fn short_names() {
    for (kind, short) in [
        ("MailDomain", "md"),
        ("Mailbox", "mbx"),
        ("MailAlias", "mal"),
        ("DkimKey", "dkim"),
    ] {
        assert_eq!(
            crd_json(kind)["spec"]["names"]["shortNames"],
            serde_json::json!([short]),
            "{kind}"
        );
    }
}

#[test]
fn domain_is_immutable_by_cel_rule_and_patterned() {
    let crd = crd_json("MailDomain");
    let domain = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"]["domain"];
    assert_eq!(
        domain["x-kubernetes-validations"][0]["rule"],
        "self == oldSelf"
    );
    assert_eq!(domain["maxLength"], 253);
    let pattern = domain["pattern"].as_str().unwrap();
    let re = Regex::new(pattern).unwrap();
    assert!(re.is_match("example.com"));
    assert!(!re.is_match("Example.com"));
    assert!(crds_yaml().contains("rule: self == oldSelf"));
}

#[test]
fn keys_of_stored_state_are_immutable() {
    for (kind, field) in [
        ("MailDomain", "domain"),
        ("Mailbox", "address"),
        ("DkimKey", "domain"),
        ("DkimKey", "selector"),
    ] {
        let crd = crd_json(kind);
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"][field];
        assert_eq!(
            schema["x-kubernetes-validations"][0]["rule"], "self == oldSelf",
            "{kind}.spec.{field}"
        );
        let message = schema["x-kubernetes-validations"][0]["message"]
            .as_str()
            .unwrap();
        assert!(
            message.contains("immutable"),
            "{kind}.spec.{field}: {message}"
        );
    }
    // Mutable fields stay mutable: a password rotation must not need a new Mailbox.
    let mailbox = crd_json("Mailbox");
    let secret_ref = &mailbox["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
        ["spec"]["properties"]["passwordSecretRef"];
    assert!(secret_ref.get("x-kubernetes-validations").is_none());
}

#[test]
fn printer_columns() {
    let columns = |kind: &str| -> Vec<String> {
        crd_json(kind)["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                format!(
                    "{}={}",
                    c["name"].as_str().unwrap(),
                    c["jsonPath"].as_str().unwrap()
                )
            })
            .collect()
    };
    let ready = "Ready=.status.conditions[?(@.type==\"Ready\")].status";
    let age = "Age=.metadata.creationTimestamp";
    assert_eq!(
        columns("MailDomain"),
        [
            "Domain=.spec.domain",
            ready,
            "DMARC=.spec.dmarc.policy",
            age
        ]
    );
    assert_eq!(
        columns("Mailbox"),
        [
            "Address=.spec.address",
            "Quota=.spec.quota",
            "Enabled=.spec.enabled",
            ready,
            age
        ]
    );
    assert_eq!(
        columns("MailAlias"),
        [
            "Address=.spec.address",
            "Destinations=.spec.destinations",
            ready,
            age
        ]
    );
    assert_eq!(
        columns("DkimKey"),
        [
            "Domain=.spec.domain",
            "Selector=.spec.selector",
            "Algorithm=.spec.algorithm",
            ready,
            age
        ]
    );
}

#[test]
fn schemas_carry_enums_defaults_and_limits() {
    let spec = |kind: &str| {
        crd_json(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            .clone()
    };

    let dkim = spec("DkimKey");
    assert_eq!(
        dkim["properties"]["algorithm"]["enum"],
        serde_json::json!(["rsa-sha256", "ed25519-sha256"])
    );
    assert_eq!(dkim["properties"]["algorithm"]["default"], "rsa-sha256");

    let domain = spec("MailDomain");
    let mut policies: Vec<String> = serde_json::from_value(
        domain["properties"]["dmarc"]["properties"]["policy"]["enum"].clone(),
    )
    .unwrap();
    policies.sort();
    assert_eq!(policies, ["none", "quarantine", "reject"]);
    assert_eq!(
        domain["properties"]["dmarc"]["properties"]["policy"]["default"],
        "none"
    );

    let mailbox = spec("Mailbox");
    assert_eq!(mailbox["properties"]["enabled"]["default"], true);
    assert_eq!(
        mailbox["required"],
        serde_json::json!(["address", "passwordSecretRef"])
    );
    assert!(mailbox["properties"]["quota"]["pattern"].is_string());

    let alias = spec("MailAlias");
    assert_eq!(alias["properties"]["destinations"]["minItems"], 1);

    let status = &crd_json("Mailbox")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        ["properties"]["status"];
    assert_eq!(
        status["properties"]["conditions"]["x-kubernetes-list-type"],
        "map"
    );
}

/// Kubernetes refuses non-structural schemas; the usual culprits are `anyOf`/`oneOf` left
/// by enums and options, `$ref`s and `additionalProperties: false`.
#[test]
fn schemas_are_structural() {
    fn walk(v: &Value, path: &str) {
        match v {
            Value::Object(map) => {
                for key in ["anyOf", "oneOf", "allOf", "$ref", "definitions", "$defs"] {
                    assert!(!map.contains_key(key), "{key} at {path}");
                }
                if let Some(Value::Bool(false)) = map.get("additionalProperties") {
                    panic!("additionalProperties: false at {path}");
                }
                for (k, sub) in map {
                    walk(sub, &format!("{path}.{k}"));
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, path)),
            _ => {}
        }
    }
    for crd in crds() {
        walk(&serde_json::to_value(&crd).unwrap(), &crd.spec.names.kind);
    }
}

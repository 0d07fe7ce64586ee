use super::*;
use crate::{DkimAlgorithm, DmarcPolicy, MtaStsMode};

const STREAM: &str = r#"
# Everything for example.com.
---
apiVersion: postbay.dev/v1alpha1
kind: MailDomain
metadata:
  name: example-com
spec:
  domain: example.com
  catchAll: postmaster
  dmarc:
    policy: quarantine
    reportAddress: dmarc-reports@example.com
  mtaSts:
    mode: testing
---
---
apiVersion: v1
kind: Secret
metadata:
  name: passwords
  namespace: mail
type: Opaque
data:
  alice: c2VjcmV0          # "secret"
  bob: b2xk                # "old", overridden by stringData below
stringData:
  bob: "{SHA512-CRYPT}$6$aRuTm4ns3Rjdn4.N$IohLFIMPFtXVZRG/OGWyqqBzIJlaKco/0J1.s7sbjvG/hFmOP6pApmx1e1oqbXaSyCVsaaTGtvH4N0zfmQ7ZQ0"
---
apiVersion: v1
kind: Secret
metadata:
  name: passwords
data:
  alice: ZGVmYXVsdA==      # "default", same name in namespace default
---
apiVersion: postbay.dev/v1alpha1
kind: Mailbox
metadata:
  name: alice
  namespace: mail
spec:
  address: alice@example.com
  passwordSecretRef: {name: passwords, key: alice}
  quota: 1Gi
  aliases: [a.liddell@example.com, "alice+lists@example.com"]
---
apiVersion: postbay.dev/v1alpha1
kind: Mailbox
metadata:
  name: bob
  namespace: mail
spec:
  address: bob@example.com
  passwordSecretRef:
    name: passwords
    key: bob
  enabled: false
---
apiVersion: postbay.dev/v1alpha1
kind: MailAlias
metadata:
  name: postmaster
spec:
  address: postmaster@example.com
  destinations:
  - alice@example.com
  - ops@elsewhere.example.org
---
apiVersion: postbay.dev/v1alpha1
kind: DkimKey
metadata:
  name: example-com-2024
spec:
  domain: example.com
  selector: "2024"
---
apiVersion: postbay.dev/v1alpha1
kind: DkimKey
metadata:
  name: example-com-ed
spec:
  domain: example.com
  selector: ed.2024
  algorithm: ed25519-sha256
  secretRef:
    name: dkim-ed
...
"#;

#[test]
fn parses_every_kind_in_stream_order() {
    let resources = parse_stream(STREAM).unwrap();
    let kinds: Vec<(&str, &str, &str)> = resources
        .iter()
        .map(|r| (r.kind(), r.namespace(), r.name()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("MailDomain", "default", "example-com"),
            ("Secret", "mail", "passwords"),
            ("Secret", "default", "passwords"),
            ("Mailbox", "mail", "alice"),
            ("Mailbox", "mail", "bob"),
            ("MailAlias", "default", "postmaster"),
            ("DkimKey", "default", "example-com-2024"),
            ("DkimKey", "default", "example-com-ed"),
        ]
    );
}

#[test]
fn fields_and_defaults_arrive() {
    let bundle = Bundle::parse(STREAM).unwrap();

    let domain = &bundle.domains[0].spec;
    assert_eq!(domain.domain, "example.com");
    assert_eq!(domain.catch_all.as_deref(), Some("postmaster"));
    let dmarc = domain.dmarc.as_ref().unwrap();
    assert_eq!(dmarc.policy, DmarcPolicy::Quarantine);
    assert_eq!(
        dmarc.report_address.as_deref(),
        Some("dmarc-reports@example.com")
    );
    assert_eq!(domain.mta_sts.as_ref().unwrap().mode, MtaStsMode::Testing);

    let alice = &bundle.mailboxes[0].spec;
    assert_eq!(alice.quota_bytes(), Ok(Some(1 << 30)));
    assert_eq!(
        alice.aliases,
        ["a.liddell@example.com", "alice+lists@example.com"]
    );
    assert!(alice.enabled, "enabled defaults to true");
    let bob = &bundle.mailboxes[1].spec;
    assert!(!bob.enabled);
    assert!(bob.aliases.is_empty());
    assert_eq!(bob.quota_bytes(), Ok(None));

    assert_eq!(bundle.aliases[0].spec.destinations.len(), 2);

    let rsa = &bundle.dkim_keys[0].spec;
    assert_eq!(
        rsa.algorithm,
        DkimAlgorithm::RsaSha256,
        "algorithm defaults to RSA"
    );
    assert_eq!(rsa.selector, "2024");
    assert!(rsa.secret_ref.is_none());
    let ed = &bundle.dkim_keys[1].spec;
    assert_eq!(ed.algorithm, DkimAlgorithm::Ed25519Sha256);
    assert_eq!(ed.secret_ref.as_ref().unwrap().name, "dkim-ed");
}

#[test]
fn secret_values_resolve_data_and_string_data_by_namespace() {
    let bundle = Bundle::parse(STREAM).unwrap();
    // `data` is base64 in the manifest and decoded here.
    assert_eq!(
        bundle
            .secret_value(Some("mail"), "passwords", "alice")
            .as_deref(),
        Some(&b"secret"[..])
    );
    // `stringData` wins over `data`, as in the API server.
    let bob = bundle
        .secret_value(Some("mail"), "passwords", "bob")
        .unwrap();
    assert!(bob.starts_with(b"{SHA512-CRYPT}$6$"));
    // No namespace on either side means `default`.
    assert_eq!(
        bundle.secret_value(None, "passwords", "alice").as_deref(),
        Some(&b"default"[..])
    );
    assert_eq!(
        bundle
            .secret_value(Some("default"), "passwords", "alice")
            .as_deref(),
        Some(&b"default"[..])
    );
    assert_eq!(bundle.secret_value(None, "passwords", "bob"), None);
    assert_eq!(
        bundle.secret_value(Some("mail"), "passwords", "carol"),
        None
    );
    assert_eq!(
        bundle.secret_value(Some("other"), "passwords", "alice"),
        None
    );
    assert_eq!(bundle.secret_value(Some("mail"), "nope", "alice"), None);

    assert_eq!(
        bundle.mailbox_password(&bundle.mailboxes[0]).as_deref(),
        Some(&b"secret"[..])
    );
}

#[test]
fn empty_streams_and_documents_yield_nothing() {
    for text in [
        "",
        "\n",
        "# only a comment\n",
        "---\n",
        "---\n---\n...\n",
        "--- ~\n",
    ] {
        assert_eq!(parse_stream(text).unwrap(), [], "{text:?}");
    }
}

/// Parses `docs` joined into a stream and returns the error's text.
fn error_of(docs: &[&str]) -> String {
    let text = docs.join("---\n");
    match parse_stream(&text) {
        Ok(resources) => panic!("expected an error, parsed {resources:?}"),
        Err(e) => e.to_string(),
    }
}

const DOMAIN: &str = "apiVersion: postbay.dev/v1alpha1\nkind: MailDomain\nmetadata: {name: example}\nspec: {domain: example.com}\n";

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            message.contains(part),
            "{message:?} should mention {part:?}"
        );
    }
}

#[test]
fn missing_fields_name_document_kind_name_and_path() {
    let mailbox = "apiVersion: postbay.dev/v1alpha1\nkind: Mailbox\nmetadata:\n  name: alice\nspec:\n  address: alice@example.com\n  passwordSecretRef:\n    name: passwords\n";
    let message = error_of(&[DOMAIN, mailbox]);
    assert_mentions(
        &message,
        &[
            "document 2 (Mailbox \"alice\")",
            "spec.passwordSecretRef",
            "missing field `key`",
            "line",
        ],
    );
}

#[test]
fn invalid_addresses_name_the_field() {
    let alias = "apiVersion: postbay.dev/v1alpha1\nkind: MailAlias\nmetadata: {name: relay}\nspec:\n  address: ok@example.com\n  destinations: [fine@example.com, \"user%other@local\"]\n";
    let message = error_of(&[DOMAIN, alias]);
    assert_mentions(
        &message,
        &[
            "document 2 (MailAlias \"relay\")",
            "spec.destinations[1]",
            "user%other@local",
            "relay",
        ],
    );
}

#[test]
fn invalid_domains_name_the_field() {
    let domain = "apiVersion: postbay.dev/v1alpha1\nkind: MailDomain\nmetadata: {name: shouting}\nspec: {domain: Example.COM}\n";
    let message = error_of(&[domain]);
    assert_mentions(
        &message,
        &[
            "document 1 (MailDomain \"shouting\")",
            "spec.domain",
            "lowercase",
        ],
    );
}

#[test]
fn content_errors_name_the_field() {
    let cases: &[(&str, &[&str])] = &[
        (
            "kind: Mailbox\nmetadata: {name: m}\nspec: {address: m@example.com, passwordSecretRef: {name: s, key: k}, quota: 1GB}",
            &["spec.quota", "1GB", "suffix"],
        ),
        (
            "kind: Mailbox\nmetadata: {name: m}\nspec: {address: m@example.com, passwordSecretRef: {name: s, key: k}, aliases: [\"@route:user@other\"]}",
            &["spec.aliases[0]", "source route"],
        ),
        (
            "kind: Mailbox\nmetadata: {name: m}\nspec: {address: m@example.com, passwordSecretRef: {name: s, key: \"a/b\"}}",
            &["spec.passwordSecretRef.key", "'/'"],
        ),
        (
            "kind: MailAlias\nmetadata: {name: a}\nspec: {address: a@example.com, destinations: []}",
            &["spec.destinations", "at least one"],
        ),
        (
            "kind: MailDomain\nmetadata: {name: d}\nspec: {domain: example.com, catchAll: \"a@b@example.com\"}",
            &["spec.catchAll", "more than one '@'"],
        ),
        (
            "kind: MailDomain\nmetadata: {name: d}\nspec: {domain: example.com, dmarc: {reportAddress: nobody}}",
            &["spec.dmarc.reportAddress", "local@domain"],
        ),
        (
            "kind: DkimKey\nmetadata: {name: k}\nspec: {domain: example.com, selector: \"_bad\"}",
            &["spec.selector", "'_'"],
        ),
        (
            "kind: MailDomain\nmetadata: {name: Not_A_Name}\nspec: {domain: example.com}",
            &["metadata.name"],
        ),
        (
            "kind: MailDomain\nmetadata: {namespace: mail}\nspec: {domain: example.com}",
            &["metadata.name: required"],
        ),
    ];
    for (body, parts) in cases {
        let doc = format!("apiVersion: postbay.dev/v1alpha1\n{body}\n");
        let message = error_of(&[&doc]);
        assert_mentions(&message, &["document 1 ("]);
        assert_mentions(&message, parts);
    }
}

#[test]
fn shape_errors_carry_serdes_path() {
    let cases: &[(&str, &[&str])] = &[
        (
            "apiVersion: postbay.dev/v1alpha1\nkind: MailDomain\nmetadata: {name: d}\nspec: {domain: example.com, dmarc: {policy: strict}}",
            &["spec.dmarc.policy", "unknown variant `strict`"],
        ),
        (
            "apiVersion: postbay.dev/v1alpha1\nkind: Mailbox\nmetadata: {name: m}\nspec: {address: m@example.com, passwordSecretRef: {name: s, key: k}, enabled: maybe}",
            &["spec.enabled", "invalid type"],
        ),
        (
            "apiVersion: postbay.dev/v1alpha1\nkind: DkimKey\nmetadata: {name: k}\nspec: {domain: example.com, selector: s, algorithm: rsa-sha1}",
            &["spec.algorithm", "rsa-sha1"],
        ),
        (
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {password: \"not base64!\"}",
            &["document 1 (Secret \"s\")", "data.password"],
        ),
        (
            "apiVersion: postbay.dev/v1alpha1\nkind: MailDomain\nmetadata: {name: d}",
            &["missing field `spec`"],
        ),
    ];
    for (doc, parts) in cases {
        assert_mentions(&error_of(&[doc]), parts);
    }
}

#[test]
fn unknown_fields_are_refused_with_a_hint() {
    let domain = "apiVersion: postbay.dev/v1alpha1\nkind: MailDomain\nmetadata: {name: d}\nspec:\n  domain: example.com\n  catchall: postmaster\n";
    assert_mentions(
        &error_of(&[domain]),
        &[
            "document 1 (MailDomain \"d\")",
            "spec.catchall: unknown field",
            "did you mean \"catchAll\"",
        ],
    );
    let nested = "apiVersion: postbay.dev/v1alpha1\nkind: Mailbox\nmetadata: {name: m}\nspec:\n  address: m@example.com\n  passwordSecretRef: {name: s, key: k, namespace: other}\n";
    assert_mentions(
        &error_of(&[nested]),
        &["spec.passwordSecretRef.namespace: unknown field"],
    );
    let top = "apiVersion: postbay.dev/v1alpha1\nkind: MailAlias\nmetadata: {name: a}\nspecs: {}\n";
    assert_mentions(
        &error_of(&[top]),
        &["specs: unknown field", "did you mean \"spec\""],
    );
    let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringdata: {a: b}\n";
    assert_mentions(
        &error_of(&[secret]),
        &["stringdata: unknown field", "\"stringData\""],
    );
}

#[test]
fn unsupported_kinds_and_versions_are_refused() {
    let cases: &[(&str, &[&str])] = &[
        (
            "apiVersion: postbay.dev/v1alpha1\nkind: Mailbx\nmetadata: {name: x}\n",
            &[
                "document 2 (Mailbx \"x\")",
                "unsupported resource \"Mailbx\"",
            ],
        ),
        (
            "apiVersion: postbay.dev/v1\nkind: Mailbox\nmetadata: {name: x}\n",
            &["\"postbay.dev/v1\""],
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
            &["\"ConfigMap\""],
        ),
        (
            "kind: Mailbox\nmetadata: {name: x}\n",
            &["apiVersion: required"],
        ),
        (
            "apiVersion: v1\nmetadata: {name: x}\n",
            &["document 2 (\"x\")", "kind: required"],
        ),
        ("just a string\n", &["document 2:", "not a mapping"]),
        ("- a\n- list\n", &["not a mapping"]),
    ];
    for (doc, parts) in cases {
        assert_mentions(&error_of(&[DOMAIN, doc]), parts);
    }
}

#[test]
fn document_numbers_count_empty_documents() {
    let bad = "apiVersion: postbay.dev/v1alpha1\nkind: MailDomain\nmetadata: {name: bad}\nspec: {domain: \"-x.com\"}\n";
    let message = error_of(&[DOMAIN, "", "# nothing\n", bad]);
    assert_mentions(
        &message,
        &["document 4 (MailDomain \"bad\")", "spec.domain"],
    );
}

#[test]
fn yaml_syntax_errors_name_document_and_line() {
    let message = error_of(&[DOMAIN, "apiVersion: v1\nkind: [unclosed\n"]);
    assert_mentions(&message, &["document 2", "invalid YAML", "line"]);
}

#[test]
fn duplicates_are_refused() {
    let message = error_of(&[DOMAIN, DOMAIN]);
    assert_mentions(
        &message,
        &[
            "document 2",
            "same MailDomain default/example as document 1",
        ],
    );
    // Same name, other namespace or other kind: fine.
    let other_ns = DOMAIN.replace("{name: example}", "{name: example, namespace: other}");
    assert_eq!(
        parse_stream(&[DOMAIN, &other_ns].join("---\n"))
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn resources_survive_a_round_trip() {
    let resources = parse_stream(STREAM).unwrap();
    let text: Vec<String> = resources
        .iter()
        .map(|r| match r {
            Resource::Domain(x) => serde_yaml::to_string(x),
            Resource::Mailbox(x) => serde_yaml::to_string(x),
            Resource::Alias(x) => serde_yaml::to_string(x),
            Resource::DkimKey(x) => serde_yaml::to_string(x),
            Resource::Secret(x) => serde_yaml::to_string(x),
        })
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(parse_stream(&text.join("---\n")).unwrap(), resources);
}

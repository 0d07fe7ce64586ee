use std::collections::BTreeMap;

use http::Method;
use postbay_api::{DkimAlgorithm, DkimKeySpec, SecretRef};
use serde_json::Value;

use super::*;
use crate::controller::reconcile;
use crate::fixtures::{
    context, declare_domain, deleting, meta, mock_client, stores, Reply, Step, EVENTS, KEY_MIRROR,
};

const PATH: &str = "/apis/postbay.dev/v1alpha1/namespaces/mail/dkimkeys/example-2026";
const SECRET: &str = "/api/v1/namespaces/mail/secrets/example-2026-dkim";
/// The user's Secret of [`supplied_key`].
const SUPPLIED: &str = "/api/v1/namespaces/mail/secrets/dkim-supplied";
/// The mirror entry of [`key`].
const ENTRY: &str = "example.test.s2026.key";
const MANAGER: &str = "fieldManager=postbay-operator-dkim-uid-example-2026";

fn key() -> DkimKey {
    DkimKey {
        metadata: meta("example-2026"),
        spec: DkimKeySpec {
            domain: "example.test".into(),
            selector: "s2026".into(),
            algorithm: DkimAlgorithm::Ed25519Sha256,
            secret_ref: None,
        },
        status: None,
    }
}

/// [`key`] with its private key supplied in Secret `dkim-supplied`.
fn supplied_key() -> DkimKey {
    let mut k = key();
    k.spec.secret_ref = Some(SecretRef {
        name: "dkim-supplied".into(),
    });
    k
}

/// The user's Secret holding `pem` under `private.key`.
fn supplied_secret(pem: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some("dkim-supplied".into()),
            namespace: Some("mail".into()),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([("private.key".into(), pem.into())])),
        ..Default::default()
    }
}

fn new_pem() -> String {
    DkimPrivateKey::generate(DkimAlgorithm::Ed25519Sha256)
        .unwrap()
        .to_pem()
        .unwrap()
}

/// Reconciles `k`, whose Secret holds `pem`, to an applied key with one Event: the request
/// bodies (Secret read, mirror, status, Event).
async fn apply_supplied(k: DkimKey, pem: &str, store: &postbay_store::Store) -> Vec<Value> {
    let (client, server) = mock_client();
    let server = server.run(vec![
        Step::new(Method::GET, SUPPLIED, Reply::object(&supplied_secret(pem))),
        Step::new(Method::PATCH, KEY_MIRROR, Reply::Echo).query(MANAGER),
        Step::new(
            Method::PATCH,
            &format!("{PATH}/status"),
            Reply::with_status(&supplied_key()),
        ),
        Step::new(Method::POST, EVENTS, Reply::Echo),
    ]);
    reconcile(Arc::new(k), context(client, store.clone()))
        .await
        .unwrap();
    server.await.unwrap()
}

/// The PEM of `entry` in a mirror apply body, `None` when the body has no such entry.
fn mirrored(body: &Value, entry: &str) -> Option<String> {
    let secret: Secret = serde_json::from_value(body.clone()).unwrap();
    let data = secret.data?;
    data.get(entry)
        .map(|v| String::from_utf8(v.0.clone()).unwrap())
}

#[tokio::test]
async fn a_key_is_generated_into_an_owned_secret_once() {
    for t in stores().await {
        declare_domain(&t.store).await;
        let (client, server) = mock_client();
        let server = server.run(vec![
            Step::new(Method::GET, SECRET, Reply::NotFound),
            Step::new(Method::PATCH, SECRET, Reply::Echo),
            Step::new(Method::PATCH, KEY_MIRROR, Reply::Echo).query(MANAGER),
            Step::new(
                Method::PATCH,
                &format!("{PATH}/status"),
                Reply::with_status(&key()),
            ),
            Step::new(Method::POST, EVENTS, Reply::Echo),
            Step::new(Method::POST, EVENTS, Reply::Echo),
        ]);
        reconcile(Arc::new(key()), context(client, t.store.clone()))
            .await
            .unwrap();
        let bodies = server.await.unwrap();
        let secret: Secret = serde_json::from_value(bodies[1].clone()).unwrap();
        let owners = secret.metadata.owner_references.clone().unwrap();
        assert_eq!(owners[0].uid, "uid-example-2026");
        assert_eq!(owners[0].controller, Some(true));
        assert_eq!(owners[0].kind, "DkimKey");
        assert_eq!(
            secret.metadata.labels.as_ref().unwrap()[MANAGED_BY.0],
            MANAGED_BY.1
        );
        // The mirror holds the same private key, under the name the smtp pods read.
        let generated = secret_value(&secret, GENERATED_SECRET_KEY).unwrap();
        assert_eq!(
            mirrored(&bodies[2], ENTRY).as_deref(),
            Some(String::from_utf8(generated).unwrap().as_str()),
            "{}",
            t.name
        );
        let status: DkimKeyStatus = serde_json::from_value(bodies[3]["status"].clone()).unwrap();
        assert_eq!(status.conditions[0].reason, "Applied", "{}", t.name);
        let record = status.dns_record.clone().unwrap();
        assert_eq!(record.name, "s2026._domainkey.example.test");
        assert!(
            record.value.starts_with("\"v=DKIM1; k=ed25519; p="),
            "{}",
            record.value
        );
        assert_eq!(bodies[4]["reason"], "KeyGenerated");
        let rows = t.store.dkim_keys("example.test").await.unwrap();
        assert_eq!(
            rows[0].private_key_ref,
            "secret:mail/example-2026-dkim/private.key"
        );
        assert!(record.value.contains(&rows[0].public_key));

        // Next time the Secret is there: read, not regenerated; the mirror is applied again
        // with the same entry (a no-op for the API server); nothing else happens.
        let mut seen = key();
        seen.status = Some(status);
        let (client, server) = mock_client();
        let server = server.run(vec![
            Step::new(Method::GET, SECRET, Reply::object(&secret)),
            Step::new(Method::PATCH, KEY_MIRROR, Reply::Echo).query(MANAGER),
        ]);
        reconcile(Arc::new(seen), context(client, t.store.clone()))
            .await
            .unwrap();
        let again = server.await.unwrap();
        assert_eq!(again[1], bodies[2]);
        assert_eq!(t.store.dkim_keys("example.test").await.unwrap(), rows);
        t.cleanup().await;
    }
}

#[tokio::test]
async fn the_mirror_follows_a_supplied_key_through_a_rotation() {
    for t in stores().await {
        declare_domain(&t.store).await;
        let first = new_pem();
        let bodies = apply_supplied(supplied_key(), &first, &t.store).await;
        let normalised = DkimPrivateKey::from_pem(&first).unwrap().to_pem().unwrap();
        assert_eq!(mirrored(&bodies[1], ENTRY), Some(normalised), "{}", t.name);
        assert_eq!(bodies[1]["metadata"]["name"], "postbay-dkim-keys");
        assert_eq!(bodies[1]["metadata"]["namespace"], "postbay");
        assert_eq!(
            bodies[1]["data"].as_object().unwrap().len(),
            1,
            "a DkimKey applies its own entry only"
        );
        assert_eq!(
            bodies[3]["note"],
            "key s2026._domainkey.example.test created"
        );

        // The user puts a new key into the Secret: row, record and mirror follow.
        let second = new_pem();
        let mut seen = supplied_key();
        seen.status = serde_json::from_value(bodies[2]["status"].clone()).unwrap();
        let bodies = apply_supplied(seen, &second, &t.store).await;
        let normalised = DkimPrivateKey::from_pem(&second).unwrap().to_pem().unwrap();
        assert_eq!(mirrored(&bodies[1], ENTRY), Some(normalised));
        assert_eq!(
            bodies[3]["note"],
            "key s2026._domainkey.example.test updated"
        );
        let public = DkimPrivateKey::from_pem(&second)
            .unwrap()
            .public_key_base64()
            .unwrap();
        let rows = t.store.dkim_keys("example.test").await.unwrap();
        assert_eq!(rows[0].public_key, public, "{}", t.name);
        t.cleanup().await;
    }
}

#[tokio::test]
async fn deleting_a_key_removes_its_mirror_entry_then_the_row() {
    for t in stores().await {
        declare_domain(&t.store).await;
        let material = KeyMaterial {
            key: DkimPrivateKey::from_pem(&new_pem()).unwrap(),
            private_key_ref: "secret:mail/dkim-supplied/private.key".into(),
        };
        let owner = Owner::new("mail", "example-2026");
        dkim::apply(&t.store, &owner, &supplied_key().spec, &material)
            .await
            .unwrap();
        let mut k = supplied_key();
        k.metadata = deleting(k.metadata);
        let (client, server) = mock_client();
        let server = server.run(vec![
            Step::new(Method::PATCH, KEY_MIRROR, Reply::Echo).query(MANAGER),
            Step::new(Method::POST, EVENTS, Reply::Echo),
            Step::new(Method::PATCH, PATH, Reply::object(&supplied_key())),
        ]);
        reconcile(Arc::new(k.clone()), context(client, t.store.clone()))
            .await
            .unwrap();
        let bodies = server.await.unwrap();
        // Applied without the entry: the API server drops what this manager owned.
        assert_eq!(mirrored(&bodies[0], ENTRY), None, "{}", t.name);
        assert!(bodies[0].get("data").is_none(), "{}", bodies[0]);
        assert_eq!(bodies[0]["metadata"]["name"], "postbay-dkim-keys");
        assert_eq!(bodies[1]["reason"], "Deleted");
        assert!(t.store.dkim_keys("example.test").await.unwrap().is_empty());

        // A retry (say the finalizer patch failed) removes nothing twice and sends no Event.
        let (client, server) = mock_client();
        let server = server.run(vec![
            Step::new(Method::PATCH, KEY_MIRROR, Reply::Echo).query(MANAGER),
            Step::new(Method::PATCH, PATH, Reply::object(&supplied_key())),
        ]);
        reconcile(Arc::new(k), context(client, t.store.clone()))
            .await
            .unwrap();
        server.await.unwrap();
        t.cleanup().await;
    }
}

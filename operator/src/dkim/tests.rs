use http::Method;
use postbay_api::{DkimAlgorithm, DkimKeySpec, MailDomainSpec};

use super::*;
use crate::controller::reconcile;
use crate::fixtures::{context, meta, mock_client, stores, Reply, Step, EVENTS};

const PATH: &str = "/apis/postbay.dev/v1alpha1/namespaces/mail/dkimkeys/example-2026";
const SECRET: &str = "/api/v1/namespaces/mail/secrets/example-2026-dkim";

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

#[tokio::test]
async fn a_key_is_generated_into_an_owned_secret_once() {
    for t in stores().await {
        let spec = MailDomainSpec {
            domain: "example.test".into(),
            catch_all: None,
            dmarc: None,
            mta_sts: None,
        };
        postbay_reconcile::domain::apply(&t.store, &Owner::new("mail", "example"), &spec)
            .await
            .unwrap();
        let (client, server) = mock_client();
        let server = server.run(vec![
            Step::new(Method::GET, SECRET, Reply::NotFound),
            Step::new(Method::PATCH, SECRET, Reply::Echo),
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
        let status: DkimKeyStatus = serde_json::from_value(bodies[2]["status"].clone()).unwrap();
        assert_eq!(status.conditions[0].reason, "Applied", "{}", t.name);
        let record = status.dns_record.clone().unwrap();
        assert_eq!(record.name, "s2026._domainkey.example.test");
        assert!(
            record.value.starts_with("\"v=DKIM1; k=ed25519; p="),
            "{}",
            record.value
        );
        assert_eq!(bodies[3]["reason"], "KeyGenerated");
        let rows = t.store.dkim_keys("example.test").await.unwrap();
        assert_eq!(
            rows[0].private_key_ref,
            "secret:mail/example-2026-dkim/private.key"
        );
        assert!(record.value.contains(&rows[0].public_key));

        // Next time the Secret is there: read, not regenerated; nothing else happens.
        let mut seen = key();
        seen.status = Some(status);
        let (client, server) = mock_client();
        let server = server.run(vec![Step::new(Method::GET, SECRET, Reply::object(&secret))]);
        reconcile(Arc::new(seen), context(client, t.store.clone()))
            .await
            .unwrap();
        server.await.unwrap();
        assert_eq!(t.store.dkim_keys("example.test").await.unwrap(), rows);
        t.cleanup().await;
    }
}

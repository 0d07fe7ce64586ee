use std::collections::BTreeMap;

use http::Method;
use k8s_openapi::ByteString;
use postbay_api::{MailboxSpec, MailboxStatus, SecretKeyRef};
use postbay_reconcile::Owner;

use kube::runtime::controller::Action;

use super::*;
use crate::controller::reconcile;
use crate::fixtures::{
    context, declare_domain, deleting, meta, mock_client, stores, Reply, Step, EVENTS,
};

const PATH: &str = "/apis/postbay.dev/v1alpha1/namespaces/mail/mailboxes/alice";
const SECRET: &str = "/api/v1/namespaces/mail/secrets/alice-pw";

fn alice() -> Mailbox {
    Mailbox {
        metadata: meta("alice"),
        spec: MailboxSpec {
            address: "alice@example.test".into(),
            password_secret_ref: SecretKeyRef {
                name: "alice-pw".into(),
                key: "password".into(),
            },
            quota: Some("2Gi".into()),
            aliases: vec!["postmaster@example.test".into()],
            enabled: true,
            send_as: Vec::new(),
            sending_limits: None,
        },
        status: None,
    }
}

fn secret(password: &str) -> Secret {
    Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("alice-pw".into()),
            namespace: Some("mail".into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "password".to_string(),
            ByteString(password.as_bytes().to_vec()),
        )])),
        ..Default::default()
    }
}

async fn reconcile_once(m: Mailbox, ctx: Arc<Context>) -> Result<Action> {
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        reconcile(Arc::new(m), ctx),
    )
    .await
    .expect("reconcile made a request the scenario did not expect")
}

#[tokio::test]
async fn a_missing_secret_is_a_condition_not_a_crash_loop() {
    for t in stores().await {
        declare_domain(&t.store).await;
        let (client, server) = mock_client();
        let server = server.run(vec![
            Step::new(Method::GET, SECRET, Reply::NotFound),
            Step::new(
                Method::PATCH,
                &format!("{PATH}/status"),
                Reply::with_status(&alice()),
            ),
            Step::new(Method::POST, EVENTS, Reply::Echo),
        ]);
        let action = reconcile_once(alice(), context(client, t.store.clone())).await;
        assert_eq!(
            action.unwrap(),
            Action::requeue(Mailbox::BLOCKED_RETRY),
            "{}",
            t.name
        );
        let bodies = server.await.unwrap();
        let ready = &bodies[1]["status"]["conditions"][0];
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], "SecretNotFound");
        assert_eq!(bodies[2]["type"], "Warning");
        assert!(t
            .store
            .mailbox("alice@example.test")
            .await
            .unwrap()
            .is_none());
        t.cleanup().await;
    }
}

#[tokio::test]
async fn a_missing_domain_is_a_condition_too() {
    for t in stores().await {
        let (client, server) = mock_client();
        let server = server.run(vec![
            Step::new(Method::GET, SECRET, Reply::object(&secret("pw"))),
            Step::new(
                Method::PATCH,
                &format!("{PATH}/status"),
                Reply::with_status(&alice()),
            ),
            Step::new(Method::POST, EVENTS, Reply::Echo),
        ]);
        reconcile_once(alice(), context(client, t.store.clone()))
            .await
            .unwrap();
        let bodies = server.await.unwrap();
        assert_eq!(
            bodies[1]["status"]["conditions"][0]["reason"], "DomainNotFound",
            "{}",
            t.name
        );
        t.cleanup().await;
    }
}

#[tokio::test]
async fn the_password_hash_follows_the_secret() {
    for t in stores().await {
        declare_domain(&t.store).await;
        let (client, server) = mock_client();
        let server = server.run(vec![
            Step::new(Method::GET, SECRET, Reply::object(&secret("first"))),
            Step::new(
                Method::PATCH,
                &format!("{PATH}/status"),
                Reply::with_status(&alice()),
            ),
            Step::new(Method::POST, EVENTS, Reply::Echo),
        ]);
        reconcile_once(alice(), context(client, t.store.clone()))
            .await
            .unwrap();
        let bodies = server.await.unwrap();
        let status: MailboxStatus = serde_json::from_value(bodies[1]["status"].clone()).unwrap();
        assert_eq!(status.conditions[0].reason, "Applied", "{}", t.name);
        assert_eq!(bodies[2]["reason"], "Created");
        let row = t
            .store
            .mailbox("alice@example.test")
            .await
            .unwrap()
            .unwrap();
        assert!(postbay_passwd::verify(b"first", &row.password_hash).unwrap());
        assert_eq!(row.quota_bytes, 2 << 30);
        assert_eq!(row.owner.as_deref(), Some("mail/alice"));
        assert_eq!(
            t.store
                .alias_destinations("postmaster@example.test")
                .await
                .unwrap(),
            ["alice@example.test"]
        );

        // The Secret changes (the Secret watch brings us here): status stays, the row follows.
        let mut seen = alice();
        seen.status = Some(status.clone());
        let (client, server) = mock_client();
        let server = server.run(vec![
            Step::new(Method::GET, SECRET, Reply::object(&secret("second"))),
            Step::new(Method::POST, EVENTS, Reply::Echo),
        ]);
        reconcile_once(seen.clone(), context(client, t.store.clone()))
            .await
            .unwrap();
        assert_eq!(server.await.unwrap()[1]["reason"], "Updated");
        let row = t
            .store
            .mailbox("alice@example.test")
            .await
            .unwrap()
            .unwrap();
        assert!(postbay_passwd::verify(b"second", &row.password_hash).unwrap());
        assert!(!postbay_passwd::verify(b"first", &row.password_hash).unwrap());

        // Nothing changed: one GET, nothing written.
        let (client, server) = mock_client();
        let server = server.run(vec![Step::new(
            Method::GET,
            SECRET,
            Reply::object(&secret("second")),
        )]);
        reconcile_once(seen, context(client, t.store.clone()))
            .await
            .unwrap();
        server.await.unwrap();
        let again = t
            .store
            .mailbox("alice@example.test")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.password_hash, row.password_hash);
        t.cleanup().await;
    }
}

#[tokio::test]
async fn deleting_a_mailbox_removes_row_and_aliases() {
    for t in stores().await {
        declare_domain(&t.store).await;
        mailbox::apply(&t.store, &Owner::new("mail", "alice"), &alice().spec, b"pw")
            .await
            .unwrap();
        let (client, server) = mock_client();
        let server = server.run(vec![
            Step::new(Method::POST, EVENTS, Reply::Echo),
            Step::new(Method::PATCH, PATH, Reply::object(&alice())),
        ]);
        let mut m = alice();
        m.metadata = deleting(m.metadata);
        reconcile_once(m, context(client, t.store.clone()))
            .await
            .unwrap();
        server.await.unwrap();
        assert!(
            t.store
                .mailbox("alice@example.test")
                .await
                .unwrap()
                .is_none(),
            "{}",
            t.name
        );
        assert!(t
            .store
            .alias_destinations("postmaster@example.test")
            .await
            .unwrap()
            .is_empty());
        t.cleanup().await;
    }
}

#[test]
fn secret_and_domain_watches_map_to_the_right_mailboxes() {
    let mut other_ns = alice();
    other_ns.metadata.namespace = Some("other".into());
    let mut bob = alice();
    bob.metadata.name = Some("bob".into());
    bob.spec.address = "bob@else.test".into();
    bob.spec.aliases.clear();
    bob.spec.password_secret_ref.name = "bob-pw".into();
    let all = vec![Arc::new(alice()), Arc::new(other_ns), Arc::new(bob)];

    let refs = reading_secret(&secret("x"), &all);
    assert_eq!(refs.len(), 1);
    assert_eq!(
        (refs[0].name.as_str(), refs[0].namespace.as_deref()),
        ("alice", Some("mail"))
    );

    let refs = under_domain(Some("mail"), "else.test", &all);
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].name, "bob");
    assert_eq!(under_domain(Some("mail"), "example.test", &all).len(), 1);
}

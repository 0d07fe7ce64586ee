use std::time::Duration;

use http::Method;
use postbay_api::condition::READY;
use postbay_api::{DnsRecordType, MailDomainSpec};
use postbay_store::DomainRow;

use kube::runtime::controller::Action;

use super::*;
use crate::controller::{error_policy, reconcile};
use crate::fixtures::{
    context, context_with, deleting, meta, mock_client, stores, Reply, Step, EVENTS,
};
use crate::status::FINALIZER;

const PATH: &str = "/apis/postbay.dev/v1alpha1/namespaces/mail/maildomains/example";

fn example() -> MailDomain {
    MailDomain {
        metadata: meta("example"),
        spec: MailDomainSpec {
            domain: "example.test".into(),
            catch_all: None,
            dmarc: None,
            mta_sts: None,
            spam_filter: None,
        },
        status: None,
    }
}

/// Runs one reconcile, failing the test if it waits on a request the scenario lacks.
async fn reconcile_once(d: MailDomain, ctx: Arc<Context>) -> Result<Action> {
    tokio::time::timeout(Duration::from_secs(10), reconcile(Arc::new(d), ctx))
        .await
        .expect("reconcile made a request the scenario did not expect")
}

#[tokio::test]
async fn a_new_domain_gets_the_finalizer_before_any_row() {
    for t in stores().await {
        let (client, server) = mock_client();
        let mut d = example();
        d.metadata.finalizers = None;
        let server = server.run(vec![Step::new(
            Method::PATCH,
            PATH,
            Reply::object(&example()),
        )]);
        reconcile_once(d, context(client, t.store.clone()))
            .await
            .unwrap();
        let bodies = server.await.unwrap();
        assert_eq!(bodies[0][1]["path"], "/metadata/finalizers");
        assert_eq!(bodies[0][1]["value"][0], FINALIZER);
        assert!(
            t.store.domain("example.test").await.unwrap().is_none(),
            "{}",
            t.name
        );
        t.cleanup().await;
    }
}

#[tokio::test]
async fn a_domain_is_written_with_dns_records_in_status_and_then_left_alone() {
    for t in stores().await {
        let (client, server) = mock_client();
        let ctx = context(client, t.store.clone());
        let server = server.run(vec![
            Step::new(
                Method::PATCH,
                &format!("{PATH}/status"),
                Reply::with_status(&example()),
            ),
            Step::new(Method::POST, EVENTS, Reply::Echo),
        ]);
        let action = reconcile_once(example(), ctx.clone()).await.unwrap();
        assert_eq!(action, Action::requeue(MailDomain::RESYNC));
        let bodies = server.await.unwrap();
        let status: MailDomainStatus = serde_json::from_value(bodies[0]["status"].clone()).unwrap();
        assert_eq!(bodies[0]["apiVersion"], "postbay.dev/v1alpha1");
        let ready = &status.conditions[0];
        assert_eq!(
            (ready.type_.as_str(), ready.reason.as_str()),
            (READY, "Applied"),
            "{}",
            t.name
        );
        assert_eq!(ready.observed_generation, Some(1));
        assert_eq!(status.observed_generation, Some(1));
        let dkim = status
            .conditions
            .iter()
            .find(|c| c.type_ == crate::domain::DKIM_CONDITION)
            .expect("a DkimSigning condition");
        assert_eq!(
            (dkim.status, dkim.reason.as_str()),
            (postbay_api::ConditionStatus::False, "NoKey"),
            "a domain without a DkimKey says its mail leaves unsigned"
        );
        let mx = status
            .dns_records
            .iter()
            .find(|r| r.type_ == DnsRecordType::Mx)
            .unwrap();
        assert_eq!(mx.value, "10 mail.example.test.");
        assert_eq!(bodies[1]["reason"], "Created");
        let row = t.store.domain("example.test").await.unwrap().unwrap();
        assert_eq!(row.owner.as_deref(), Some("mail/example"));

        // The next reconcile sees its own status: no request at all, no self-wakeup.
        let (client, server) = mock_client();
        let ctx = context(client, t.store.clone());
        let server = server.run(vec![]);
        let mut seen = example();
        seen.status = Some(status);
        reconcile_once(seen, ctx).await.unwrap();
        assert!(server.await.unwrap().is_empty());
        t.cleanup().await;
    }
}

#[tokio::test]
async fn a_domain_claimed_in_another_namespace_is_a_conflict_that_changes_nothing() {
    for t in stores().await {
        let theirs = DomainRow {
            name: "example.test".into(),
            catch_all: Some("x".into()),
            enabled: true,
            owner: Some("other/example".into()),
        };
        t.store.put_domain(&theirs).await.unwrap();
        let (client, server) = mock_client();
        let ctx = context(client, t.store.clone());
        let server = server.run(vec![
            Step::new(
                Method::PATCH,
                &format!("{PATH}/status"),
                Reply::with_status(&example()),
            ),
            Step::new(Method::POST, EVENTS, Reply::Echo),
        ]);
        let action = reconcile_once(example(), ctx.clone()).await.unwrap();
        assert_eq!(action, Action::requeue(MailDomain::BLOCKED_RETRY));
        let bodies = server.await.unwrap();
        let ready = &bodies[0]["status"]["conditions"][0];
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], "Conflict");
        assert_eq!(
            ready["message"],
            "domain example.test is already declared by other/example"
        );
        assert!(bodies[0]["status"].get("dnsRecords").is_none());
        assert_eq!(bodies[1]["type"], "Warning");
        assert_eq!(bodies[1]["reason"], "Conflict");
        assert_eq!(
            t.store.domain("example.test").await.unwrap().unwrap(),
            theirs,
            "{}",
            t.name
        );

        // Deleting the losing resource leaves the winner's row.
        let (client, server) = mock_client();
        let server = server.run(vec![Step::new(
            Method::PATCH,
            PATH,
            Reply::object(&example()),
        )]);
        let mut gone = example();
        gone.metadata = deleting(gone.metadata);
        reconcile_once(gone, context(client, t.store.clone()))
            .await
            .unwrap();
        server.await.unwrap();
        assert_eq!(
            t.store.domain("example.test").await.unwrap().unwrap(),
            theirs
        );
        t.cleanup().await;
    }
}

#[tokio::test]
async fn deleting_a_domain_removes_its_row_then_the_finalizer() {
    for t in stores().await {
        postbay_reconcile::domain::apply(
            &t.store,
            &postbay_reconcile::Owner::new("mail", "example"),
            &example().spec,
        )
        .await
        .unwrap();
        let (client, server) = mock_client();
        let server = server.run(vec![
            Step::new(Method::POST, EVENTS, Reply::Echo),
            Step::new(Method::PATCH, PATH, Reply::object(&example())),
        ]);
        let mut d = example();
        d.metadata = deleting(d.metadata);
        reconcile_once(d, context(client, t.store.clone()))
            .await
            .unwrap();
        let bodies = server.await.unwrap();
        assert_eq!(bodies[0]["reason"], "Deleted");
        assert_eq!(bodies[1][1]["op"], "remove", "{}", bodies[1]);
        assert!(
            t.store.domain("example.test").await.unwrap().is_none(),
            "{}",
            t.name
        );
        t.cleanup().await;
    }
}

#[tokio::test]
async fn a_database_outage_is_reported_and_retried_with_backoff() {
    for t in stores().await {
        t.store.close().await; // every query now fails
        let (client, server) = mock_client();
        let ctx = context(client, t.store.clone());
        let server = server.run(vec![Step::new(
            Method::PATCH,
            &format!("{PATH}/status"),
            Reply::with_status(&example()),
        )]);
        let d = Arc::new(example());
        let err = reconcile_once((*d).clone(), ctx.clone()).await.unwrap_err();
        let bodies = server.await.unwrap();
        assert_eq!(
            bodies[0]["status"]["conditions"][0]["reason"],
            "ReconcileFailed"
        );
        assert_eq!(err.metric_label(), "store", "{err}");
        assert_eq!(
            error_policy(d.clone(), &err, ctx.clone()),
            Action::requeue(Duration::from_secs(2))
        );
        assert_eq!(
            error_policy(d.clone(), &err, ctx.clone()),
            Action::requeue(Duration::from_secs(4))
        );
        assert_eq!(ctx.metrics.failures(MailDomain::KIND, "store"), 2);
        t.cleanup().await;
    }
}

#[tokio::test]
async fn external_dns_endpoints_are_written_or_their_absence_reported() {
    for t in stores().await {
        let settings = crate::Settings {
            external_dns: true,
            ..Default::default()
        };
        let endpoint =
            "/apis/externaldns.k8s.io/v1alpha1/namespaces/mail/dnsendpoints/example-mail";
        let (client, server) = mock_client();
        let server = server.run(vec![
            Step::new(Method::PATCH, endpoint, Reply::Echo),
            Step::new(
                Method::PATCH,
                &format!("{PATH}/status"),
                Reply::with_status(&example()),
            ),
            Step::new(Method::POST, EVENTS, Reply::Echo),
        ]);
        reconcile_once(
            example(),
            context_with(client, t.store.clone(), settings.clone()),
        )
        .await
        .unwrap();
        let bodies = server.await.unwrap();
        assert_eq!(bodies[0]["kind"], "DNSEndpoint");
        assert_eq!(
            bodies[0]["metadata"]["ownerReferences"][0]["uid"],
            "uid-example"
        );
        let endpoints = bodies[0]["spec"]["endpoints"].as_array().unwrap();
        assert!(endpoints
            .iter()
            .any(|e| e["recordType"] == "MX" && e["dnsName"] == "example.test"));
        let published = &bodies[1]["status"]["conditions"][1];
        assert_eq!(published["type"], crate::dns_endpoint::CONDITION);
        assert_eq!(published["status"], "True", "{}", t.name);

        // Without the CRD: a condition, and the domain is still Ready.
        let (client, server) = mock_client();
        let server = server.run(vec![
            Step::new(Method::PATCH, endpoint, Reply::NotFound),
            Step::new(
                Method::PATCH,
                &format!("{PATH}/status"),
                Reply::with_status(&example()),
            ),
        ]);
        let mut seen = example();
        seen.status = serde_json::from_value(bodies[1]["status"].clone()).unwrap();
        reconcile_once(seen, context_with(client, t.store.clone(), settings))
            .await
            .unwrap();
        let bodies = server.await.unwrap();
        let conditions = &bodies[1]["status"]["conditions"];
        assert_eq!(conditions[0]["status"], "True");
        assert_eq!(conditions[1]["reason"], "CRDNotInstalled");
        t.cleanup().await;
    }
}

#[tokio::test]
async fn with_a_dns_check_status_says_what_is_not_published() {
    let mut all = stores().await;
    let t = all.remove(0);
    for unused in all {
        unused.cleanup().await;
    }
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let settings = crate::Settings {
        dns_check_server: Some(silent.local_addr().unwrap()),
        ..Default::default()
    };
    let (client, server) = mock_client();
    let server = server.run(vec![
        Step::new(
            Method::PATCH,
            &format!("{PATH}/status"),
            Reply::with_status(&example()),
        ),
        Step::new(Method::POST, EVENTS, Reply::Echo),
    ]);
    let action = reconcile_once(example(), context_with(client, t.store.clone(), settings))
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(DNS_RECHECK));
    let bodies = server.await.unwrap();
    let condition = &bodies[0]["status"]["conditions"][1];
    assert_eq!(condition["type"], DNS_CONDITION);
    assert_eq!(condition["reason"], "LookupFailed");
    assert!(bodies[0]["status"]["dnsRecords"][0]
        .get("published")
        .is_none());
    t.cleanup().await;
}

#[test]
fn published_summary_names_the_missing_records() {
    let spec = example().spec;
    let mut records = postbay_reconcile::dns::domain_records(
        &spec,
        &postbay_reconcile::MailHosts::single("m.test"),
        &[],
    );
    for r in &mut records {
        r.published = Some(r.purpose != "spf" && r.purpose != "dmarc");
    }
    let (ok, reason, message) = published_summary(&records);
    assert!(!ok);
    assert_eq!(reason, "NotPublished");
    assert_eq!(message, "missing or different: spf, dmarc");
    for r in &mut records {
        r.published = Some(true);
    }
    assert_eq!(published_summary(&records).1, "Published");
}

#[test]
fn rivals_are_other_claimants_of_the_same_domain() {
    let mine = example();
    let mut other = example();
    other.metadata.namespace = Some("other".into());
    other.metadata.uid = Some("uid-other".into());
    let mut unrelated = example();
    unrelated.metadata.uid = Some("uid-3".into());
    unrelated.spec.domain = "else.test".into();
    let all = vec![Arc::new(mine.clone()), Arc::new(other), Arc::new(unrelated)];
    let refs = rivals(&mine, &all);
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].namespace.as_deref(), Some("other"));
}

#[test]
fn dkim_signing_condition_follows_the_enabled_keys() {
    let key = |selector: &str, enabled: bool| postbay_store::DkimKeyRow {
        domain: "example.test".into(),
        selector: selector.into(),
        algorithm: "rsa-sha256".into(),
        public_key: "AAAA".into(),
        private_key_ref: "file:/dev/null".into(),
        enabled,
        owner: None,
    };
    let none = super::dkim_condition(&[], &[], Some(1));
    assert_eq!(
        (none.status, none.reason.as_str()),
        (postbay_api::ConditionStatus::False, "NoKey")
    );
    let disabled = super::dkim_condition(&[key("old", false)], &[], Some(1));
    assert_eq!(disabled.reason, "NoKey");
    let signing = super::dkim_condition(
        &[key("s1", true), key("old", false), key("s2", true)],
        &[],
        Some(1),
    );
    assert_eq!(
        (signing.status, signing.reason.as_str()),
        (postbay_api::ConditionStatus::True, "Signing")
    );
    assert!(signing.message.contains("s1, s2"), "{}", signing.message);
}

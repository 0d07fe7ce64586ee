use http::Method;
use postbay_api::{MailAliasSpec, MailDomainSpec};
use postbay_reconcile::Owner;

use kube::runtime::controller::Action;

use super::*;
use crate::controller::reconcile;
use crate::fixtures::{context, meta, mock_client, stores, Reply, Step, EVENTS};

const PATH: &str = "/apis/postbay.dev/v1alpha1/namespaces/mail/mailaliases/team";

fn team() -> MailAlias {
    MailAlias {
        metadata: meta("team"),
        spec: MailAliasSpec {
            address: "team@example.test".into(),
            destinations: vec!["alice@example.test".into(), "far@remote.test".into()],
        },
        status: None,
    }
}

#[tokio::test]
async fn an_alias_waits_for_its_domain_then_is_written() {
    for t in stores().await {
        let (client, server) = mock_client();
        let server = server.run(vec![
            Step::new(
                Method::PATCH,
                &format!("{PATH}/status"),
                Reply::with_status(&team()),
            ),
            Step::new(Method::POST, EVENTS, Reply::Echo),
        ]);
        let action = reconcile(Arc::new(team()), context(client, t.store.clone()))
            .await
            .unwrap();
        assert_eq!(action, Action::requeue(MailAlias::BLOCKED_RETRY));
        let bodies = server.await.unwrap();
        assert_eq!(
            bodies[0]["status"]["conditions"][0]["reason"], "DomainNotFound",
            "{}",
            t.name
        );

        let spec = MailDomainSpec {
            domain: "example.test".into(),
            catch_all: None,
            dmarc: None,
            mta_sts: None,
            spam_filter: None,
        };
        postbay_reconcile::domain::apply(&t.store, &Owner::new("mail", "example"), &spec)
            .await
            .unwrap();
        let mut seen = team();
        seen.status = serde_json::from_value(bodies[0]["status"].clone()).unwrap();
        let (client, server) = mock_client();
        let server = server.run(vec![
            Step::new(
                Method::PATCH,
                &format!("{PATH}/status"),
                Reply::with_status(&team()),
            ),
            Step::new(Method::POST, EVENTS, Reply::Echo),
        ]);
        reconcile(Arc::new(seen), context(client, t.store.clone()))
            .await
            .unwrap();
        let bodies = server.await.unwrap();
        assert_eq!(bodies[0]["status"]["conditions"][0]["reason"], "Applied");
        assert_eq!(bodies[1]["reason"], "Created");
        assert_eq!(
            t.store
                .alias_destinations("team@example.test")
                .await
                .unwrap(),
            ["alice@example.test", "far@remote.test"]
        );
        t.cleanup().await;
    }
}

//! Leader election on a coordination.k8s.io/v1 Lease, so two operator replicas never
//! reconcile at once. Optimistic concurrency does the locking: every write carries the
//! resourceVersion that was read, and a conflict means someone else got there first.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::Client;

use crate::{Error, Result};

/// One replica's handle on the Lease.
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl LeaseLock {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> LeaseLock {
        LeaseLock {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            duration,
        }
    }

    /// Takes the Lease if it is free or expired, renews it if ours; true while we hold it.
    pub async fn try_acquire_or_renew(&self) -> Result<bool> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(now, now, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(Error::Kube(e)),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let expired = match (spec.renew_time.as_ref(), spec.lease_duration_seconds) {
            (Some(renewed), Some(seconds)) => {
                renewed.0 + SignedDuration::from_secs(i64::from(seconds)) < now
            }
            _ => true,
        };
        if !ours && !expired {
            return Ok(false);
        }
        let (acquired, transitions) = if ours {
            (
                spec.acquire_time.map(|t| t.0).unwrap_or(now),
                spec.lease_transitions.unwrap_or(0),
            )
        } else {
            tracing::info!(previous = ?spec.holder_identity, "taking over the expired leader Lease");
            (now, spec.lease_transitions.unwrap_or(0) + 1)
        };
        lease.spec = Some(self.spec(acquired, now, transitions));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(Error::Kube(e)),
        }
    }

    fn spec(&self, acquired: Timestamp, renewed: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs().try_into().unwrap_or(i32::MAX)),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&self) -> Result<()> {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election attempt failed"),
            }
            tokio::time::sleep(self.retry_period()).await;
        }
    }

    /// Renews the Lease until that fails for longer than it lasts; then returns, and the
    /// caller must stop reconciling (another replica may take over).
    pub async fn hold(&self) -> Error {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.retry_period()).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewal = tokio::time::Instant::now(),
                Ok(false) => return Error::LeadershipLost,
                Err(e) => tracing::warn!(error = %e, "renewing the leader Lease failed"),
            }
            // Stop before the Lease can expire in others' eyes.
            if last_renewal.elapsed() > self.duration.mul_f32(0.8) {
                return Error::LeadershipLost;
            }
        }
    }

    fn retry_period(&self) -> Duration {
        (self.duration / 3).max(Duration::from_millis(100))
    }
}

#[cfg(test)]
mod tests {
    use http::Method;
    use serde_json::json;

    use super::*;
    use crate::fixtures::{mock_client, Reply, Step};

    #[tokio::test]
    async fn a_missing_lease_is_created_and_held() {
        let (client, server) = mock_client();
        let path = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/postbay-operator";
        let server = server.run(vec![
            Step::new(Method::GET, path, Reply::NotFound),
            Step::new(
                Method::POST,
                "/apis/coordination.k8s.io/v1/namespaces/ops/leases",
                Reply::Echo,
            ),
        ]);
        let lock = LeaseLock::new(
            client,
            "ops",
            "postbay-operator",
            "pod-a",
            Duration::from_secs(15),
        );
        assert!(lock.try_acquire_or_renew().await.unwrap());
        let requests = server.await.unwrap();
        let created = &requests[1];
        assert_eq!(created["spec"]["holderIdentity"], "pod-a");
        assert_eq!(created["spec"]["leaseDurationSeconds"], 15);
    }

    #[tokio::test]
    async fn a_live_lease_of_another_is_respected_and_an_expired_one_taken() {
        let path = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/postbay-operator";
        let lease = |renewed: Timestamp| {
            json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": "postbay-operator", "namespace": "ops", "resourceVersion": "7"},
                "spec": {"holderIdentity": "pod-b", "leaseDurationSeconds": 15,
                         "renewTime": MicroTime(renewed), "leaseTransitions": 2}
            })
        };
        let (client, server) = mock_client();
        let server = server.run(vec![Step::new(
            Method::GET,
            path,
            Reply::Json(lease(Timestamp::now())),
        )]);
        let lock = LeaseLock::new(
            client,
            "ops",
            "postbay-operator",
            "pod-a",
            Duration::from_secs(15),
        );
        assert!(!lock.try_acquire_or_renew().await.unwrap());
        server.await.unwrap();

        let (client, server) = mock_client();
        let old = Timestamp::now() - SignedDuration::from_secs(60);
        let server = server.run(vec![
            Step::new(Method::GET, path, Reply::Json(lease(old))),
            Step::new(Method::PUT, path, Reply::Echo),
        ]);
        let lock = LeaseLock::new(
            client,
            "ops",
            "postbay-operator",
            "pod-a",
            Duration::from_secs(15),
        );
        assert!(lock.try_acquire_or_renew().await.unwrap());
        let requests = server.await.unwrap();
        assert_eq!(requests[1]["spec"]["holderIdentity"], "pod-a");
        assert_eq!(requests[1]["spec"]["leaseTransitions"], 3);
        assert_eq!(
            requests[1]["metadata"]["resourceVersion"], "7",
            "the write is conditional"
        );
    }
}

//! Test helpers: a mocked API server answering a scripted scenario (as controller-rs's
//! fixtures do), stores on SQLite and MariaDB, and a Context wired to both.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::Client;
use postbay_reconcile::MailHosts;
use postbay_store::Store;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tower_test::mock::{self, Handle};

use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::Context;

/// How long a scenario waits for each expected request.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// What the mocked API server answers to one request.
pub enum Reply {
    /// 200 with this object.
    Json(Value),
    /// 200 with the request's own body, as a create or apply of a new object would.
    Echo,
    /// 200 with this object, its `status` replaced by the one in the request: what the API
    /// server answers to a status patch.
    WithStatus(Value),
    /// 404 with a Kubernetes `Status`.
    NotFound,
}

impl Reply {
    /// [`Reply::WithStatus`] of a typed object.
    pub fn with_status(object: &impl serde::Serialize) -> Reply {
        Reply::WithStatus(serde_json::to_value(object).unwrap())
    }

    /// [`Reply::Json`] of a typed object.
    pub fn object(object: &impl serde::Serialize) -> Reply {
        Reply::Json(serde_json::to_value(object).unwrap())
    }
}

/// One expected request: method and exact path (the query only when [`Step::query`] asks).
pub struct Step {
    method: Method,
    path: String,
    query: Option<String>,
    reply: Reply,
}

impl Step {
    pub fn new(method: Method, path: &str, reply: Reply) -> Step {
        Step {
            method,
            path: path.into(),
            query: None,
            reply,
        }
    }

    /// Also expects `part` in the query, e.g. `fieldManager=...`.
    pub fn query(mut self, part: &str) -> Step {
        self.query = Some(part.into());
        self
    }
}

pub struct ApiServer(Handle<Request<Body>, Response<Body>>);

/// A client whose requests go to the returned scripted server.
pub fn mock_client() -> (Client, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), ApiServer(handle))
}

impl ApiServer {
    /// Serves `steps` in order, asserting method and path of each request, and yields the
    /// JSON bodies of the requests received (Null for none). A missing request fails after
    /// [`STEP_TIMEOUT`]; an unexpected one fails the assertion of the step it lands on.
    pub fn run(self, steps: Vec<Step>) -> JoinHandle<Vec<Value>> {
        let mut handle = self.0;
        tokio::spawn(async move {
            let mut bodies = Vec::new();
            for step in steps {
                let next = tokio::time::timeout(STEP_TIMEOUT, handle.next_request()).await;
                let (request, send) = next
                    .unwrap_or_else(|_| {
                        panic!("expected {} {}, got nothing", step.method, step.path)
                    })
                    .expect("client dropped");
                assert_eq!(
                    (request.method(), request.uri().path()),
                    (&step.method, step.path.as_str()),
                    "unexpected request (query {:?})",
                    request.uri().query()
                );
                if let Some(part) = &step.query {
                    let query = request.uri().query().unwrap_or_default();
                    assert!(query.contains(part.as_str()), "{part} not in {query}");
                }
                let bytes = request.into_body().collect_bytes().await.unwrap();
                let body: Value = if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).expect("request body is JSON")
                };
                let (code, reply) = match step.reply {
                    Reply::Json(v) => (StatusCode::OK, v),
                    Reply::Echo => (StatusCode::OK, body.clone()),
                    Reply::WithStatus(mut object) => {
                        object["status"] = body["status"].clone();
                        (StatusCode::OK, object)
                    }
                    Reply::NotFound => (
                        StatusCode::NOT_FOUND,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "message": "not found", "reason": "NotFound", "code": 404}),
                    ),
                };
                let response = Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap();
                send.send_response(response);
                bodies.push(body);
            }
            bodies
        })
    }
}

/// A Context for `client` and `store`, with mail host `mail.example.test` and the DKIM key
/// mirror in namespace `postbay` (not from the environment).
pub fn context(client: Client, store: Store) -> Arc<Context> {
    let mut settings = Settings::default();
    settings.dkim_keys.namespace = "postbay".into();
    context_with(client, store, settings)
}

/// [`context`] with other settings.
pub fn context_with(client: Client, store: Store, settings: Settings) -> Arc<Context> {
    Arc::new(Context::new(
        client,
        store,
        settings,
        MailHosts::single("mail.example.test"),
        Arc::new(Metrics::default()),
    ))
}

/// A store for a test, dropped (MariaDB database included) by `cleanup`.
pub use postbay_testkit::TestStore;

/// SQLite always; MariaDB when POSTBAY_TEST_MYSQL_URL is set (required with
/// POSTBAY_REQUIRE_PEERS=1).
pub async fn stores() -> Vec<TestStore> {
    postbay_testkit::stores("op").await
}

/// Declares `example.test` for MailDomain `mail/example`, as a reconcile of it would.
pub async fn declare_domain(store: &Store) {
    let spec = postbay_api::MailDomainSpec {
        domain: "example.test".into(),
        catch_all: None,
        dmarc: None,
        mta_sts: None,
        spam_filter: None,
    };
    let owner = postbay_reconcile::Owner::new("mail", "example");
    postbay_reconcile::domain::apply(store, &owner, &spec)
        .await
        .unwrap();
}

/// Metadata of a stored object: namespace `mail`, a uid, generation 1, our finalizer.
pub fn meta(name: &str) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: Some(name.into()),
        namespace: Some("mail".into()),
        uid: Some(format!("uid-{name}")),
        generation: Some(1),
        resource_version: Some("1".into()),
        finalizers: Some(vec![crate::status::FINALIZER.into()]),
        ..Default::default()
    }
}

/// Marks `meta` as being deleted.
pub fn deleting(
    mut meta: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    meta.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    meta
}

/// Path of the DKIM key mirror [`context`] writes.
pub const KEY_MIRROR: &str = "/api/v1/namespaces/postbay/secrets/postbay-dkim-keys";

/// Path of the events endpoint in namespace `mail`.
pub const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/mail/events";

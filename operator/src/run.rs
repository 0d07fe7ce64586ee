//! Wiring: client, store, health and metrics listener, leader election, and the four
//! controllers with the watches that tie them together.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use kube::runtime::{watcher, Controller};
use kube::Client;
use postbay_api::{DkimKey, MailAlias, MailDomain, Mailbox};
use postbay_store::Store;

use crate::context::Context;
use crate::controller::{error_policy, reconcile, Kind};
use crate::leader::LeaseLock;
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::{alias, dkim, domain, http, mailbox, Error, Result};

/// What `postbay operator` hands over.
pub struct Options {
    pub settings: Settings,
    pub database_url: String,
    pub mail_root: PathBuf,
    /// The mail components' hostname; DNS guidance falls back to it.
    pub hostname: String,
}

/// Runs until a signal, or until leadership is lost (an error: the process should exit and
/// be restarted as a candidate).
pub async fn run(options: Options) -> Result<()> {
    // kube's rustls needs a process-wide crypto provider; ring is the workspace's.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let settings = options.settings;
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let listener = http::bind(settings.metrics_addr).await?;
    println!(
        "operator health and metrics on http://{}",
        listener.local_addr().map_err(Error::Io)?
    );
    tokio::spawn(http::serve(listener, metrics.clone(), ready.clone()));

    let client = Client::try_default().await?;
    let store = Store::open(&options.database_url, &options.mail_root).await?;
    let probe: Api<MailDomain> = match &settings.watch_namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    if let Err(e) = probe.list(&ListParams::default().limit(1)).await {
        return Err(Error::Settings(format!(
            "cannot list MailDomains ({e}); are the CRDs installed? `postbay crds | kubectl apply -f -`"
        )));
    }
    ready.store(true, Ordering::Relaxed);

    let lock = settings.leader_election.enabled.then(|| {
        LeaseLock::new(
            client.clone(),
            &settings.leader_election.namespace,
            &settings.leader_election.lease_name,
            &settings.identity,
            settings.lease_duration(),
        )
    });
    if let Some(lock) = &lock {
        println!(
            "waiting for the leader Lease {}/{}",
            settings.leader_election.namespace, settings.leader_election.lease_name
        );
        lock.acquire().await?;
    }
    metrics.set_leader(true);
    println!("operator reconciling as {}", settings.identity);

    let hosts = settings.mail_hosts(&options.hostname);
    let ctx = Arc::new(Context::new(client, store, settings, hosts, metrics));
    let controllers = futures::future::join4(
        domains(ctx.clone()),
        mailboxes(ctx.clone()),
        aliases(ctx.clone()),
        dkim_keys(ctx.clone()),
    );
    match &lock {
        Some(lock) => tokio::select! {
            _ = controllers => Ok(()),
            lost = lock.hold() => Err(lost),
        },
        None => {
            controllers.await;
            Ok(())
        }
    }
}

/// The API for `K` in the watched namespace, or in all of them.
fn scoped<K>(ctx: &Context) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match &ctx.settings.watch_namespace {
        Some(namespace) => Api::namespaced(ctx.client.clone(), namespace),
        None => Api::all(ctx.client.clone()),
    }
}

async fn domains(ctx: Arc<Context>) {
    let wc = watcher::Config::default();
    let controller = Controller::new(scoped::<MailDomain>(&ctx), wc.clone());
    let rivals = controller.store();
    let by_domain = controller.store();
    let controller = controller
        .watches(scoped::<MailDomain>(&ctx), wc.clone(), move |changed| {
            domain::rivals(&changed, &rivals.state())
        })
        .watches(scoped::<DkimKey>(&ctx), wc, move |key| {
            domain::for_domain(
                key.metadata.namespace.as_deref(),
                &key.spec.domain,
                &by_domain.state(),
            )
        });
    serve(controller, ctx).await;
}

async fn mailboxes(ctx: Arc<Context>) {
    let wc = watcher::Config::default();
    let controller = Controller::new(scoped::<Mailbox>(&ctx), wc.clone());
    let by_secret = controller.store();
    let by_domain = controller.store();
    let controller = controller
        .watches(scoped::<Secret>(&ctx), wc.clone(), move |secret| {
            mailbox::reading_secret(&secret, &by_secret.state())
        })
        .watches(scoped::<MailDomain>(&ctx), wc, move |d| {
            mailbox::under_domain(
                d.metadata.namespace.as_deref(),
                &d.spec.domain,
                &by_domain.state(),
            )
        });
    serve(controller, ctx).await;
}

async fn aliases(ctx: Arc<Context>) {
    let wc = watcher::Config::default();
    let controller = Controller::new(scoped::<MailAlias>(&ctx), wc.clone());
    let by_domain = controller.store();
    let controller = controller.watches(scoped::<MailDomain>(&ctx), wc, move |d| {
        alias::under_domain(
            d.metadata.namespace.as_deref(),
            &d.spec.domain,
            &by_domain.state(),
        )
    });
    serve(controller, ctx).await;
}

async fn dkim_keys(ctx: Arc<Context>) {
    let wc = watcher::Config::default();
    let generated = watcher::Config::default().labels(&format!(
        "{}={}",
        dkim::MANAGED_BY.0,
        dkim::MANAGED_BY.1
    ));
    let controller = Controller::new(scoped::<DkimKey>(&ctx), wc.clone());
    let by_domain = controller.store();
    let controller = controller.owns(scoped::<Secret>(&ctx), generated).watches(
        scoped::<MailDomain>(&ctx),
        wc,
        move |d| {
            dkim::under_domain(
                d.metadata.namespace.as_deref(),
                &d.spec.domain,
                &by_domain.state(),
            )
        },
    );
    serve(controller, ctx).await;
}

/// Runs `controller` with the shared reconcile and error policy until shutdown.
async fn serve<K: Kind>(controller: Controller<K>, ctx: Arc<Context>) {
    controller
        .shutdown_on_signal()
        .run(reconcile::<K>, error_policy::<K>, ctx)
        .for_each(log_result)
        .await;
}

async fn log_result<K: std::fmt::Debug, E: std::fmt::Display>(result: Result<K, E>) {
    match result {
        Ok(done) => tracing::debug!(?done, "reconciled"),
        Err(e) => tracing::debug!(error = %e, "controller event"),
    }
}

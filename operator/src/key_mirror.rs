//! The DKIM key mirror: one Secret (`postbay-dkim-keys` by default) holding the private key
//! of every applied DkimKey as `<domain>.<selector>.key` (PEM). The smtp pods mount it as a
//! directory, which the kubelet keeps current, so they sign without any Secret API access
//! and the keys of every namespace meet in the one namespace the smtp pods run in.
//!
//! Each DkimKey writes its own data key by server-side apply under a field manager of its
//! own (`postbay-operator-dkim-<uid>`). The API server then tracks, per data key, which
//! DkimKey set it: reconciles of different keys never overwrite each other's entries (no
//! read-modify-write of the whole Secret, no lost update), and an apply without the entry
//! removes exactly the entry that DkimKey owned, nothing another one wrote.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, Patch, PatchParams};
use postbay_api::DkimKey;

use crate::context::Context;
use crate::Result;

/// Labels of the mirror. Not `app.kubernetes.io/managed-by`: that label selects the
/// generated key Secrets the DkimKey controller watches, and the mirror is not one of them.
const LABELS: [(&str, &str); 2] = [
    ("app.kubernetes.io/part-of", "postbay"),
    ("app.kubernetes.io/component", "dkim-keys"),
];

/// The file name the smtp pods read: `<domain>.<selector>.key`.
pub fn data_key(k: &DkimKey) -> String {
    format!("{}.{}.key", k.spec.domain, k.spec.selector)
}

/// The field manager of `k`'s entry: by uid, which is unique, short enough for the API
/// server's 128-character limit (a namespace and name are not), and new when a DkimKey of
/// the same name is created again.
pub fn field_manager(k: &DkimKey) -> String {
    let id = k.metadata.uid.as_deref().or(k.metadata.name.as_deref());
    format!("postbay-operator-dkim-{}", id.unwrap_or_default())
}

/// Adds or replaces `k`'s entry with `pem`. Unchanged, the API server writes nothing.
pub async fn put(ctx: &Context, k: &DkimKey, pem: &str) -> Result<()> {
    let data = BTreeMap::from([(data_key(k), ByteString(pem.as_bytes().to_vec()))]);
    apply(ctx, k, Some(data)).await
}

/// Removes `k`'s entry, if it wrote one; entries of other DkimKeys stay.
pub async fn remove(ctx: &Context, k: &DkimKey) -> Result<()> {
    apply(ctx, k, None).await
}

/// Applies the mirror as `k`'s field manager owns it: its one entry, or none. Forced, so a
/// DkimKey that took a selector over from a deleted one takes its entry over too.
async fn apply(
    ctx: &Context,
    k: &DkimKey,
    data: Option<BTreeMap<String, ByteString>>,
) -> Result<()> {
    let settings = &ctx.settings.dkim_keys;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &settings.namespace);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(settings.secret_name.clone()),
            namespace: Some(settings.namespace.clone()),
            labels: Some(
                LABELS
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data,
        ..Default::default()
    };
    let params = PatchParams::apply(&field_manager(k)).force();
    secrets
        .patch(&settings.secret_name, &params, &Patch::Apply(&secret))
        .await?;
    tracing::debug!(key = %data_key(k), secret = %settings.secret_name, "DKIM key mirror applied");
    Ok(())
}

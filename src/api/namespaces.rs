//! Namespaces: the ones a new cluster has, creation only into active ones, deletion as
//! upstream's namespace storage does it (Terminating until the namespace controller has
//! emptied it and removed its finalizer through `finalize`).

use std::time::Duration;

use actix_web::HttpResponse;
use serde_json::{json, Value};
use tracing::{info, warn};

use super::object;
use super::request::write::WRITE_ATTEMPTS;
use super::request::{respond, Ctx};
use super::resources;
use super::status::{ApiError, Cause};
use super::validate::FieldValidation;
use crate::store::{Consistency, StoreClient, StoreError};

pub const SYSTEM: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

fn namespaces() -> &'static resources::Resource {
    // The table always has namespaces.
    resources::find("", "v1", "namespaces").expect("namespaces are served")
}

/// Creates the system namespaces if missing; retried until the store takes writes.
pub async fn bootstrap(store: StoreClient) {
    let res = namespaces();
    for ns in SYSTEM {
        loop {
            let mut obj =
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            if let Err(e) = object::prepare_create(res, &mut obj, None) {
                warn!("bootstrap namespace {ns}: {e}");
                break;
            }
            let admitted = res
                .strategy
                .admit_create(res, &mut obj, FieldValidation::Ignore);
            if let Err(e) = admitted {
                warn!("bootstrap namespace {ns}: {e}");
                break;
            }
            let Ok(bytes) = object::to_bytes(&obj) else {
                break;
            };
            match store.create(&res.key(None, ns), bytes).await {
                Ok(_) | Err(StoreError::AlreadyExists { .. }) => break,
                Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(e) => {
                    warn!("bootstrap namespace {ns}: {e}");
                    break;
                }
            }
        }
    }
}

/// The namespace `ns` as stored.
pub async fn get(ctx: &Ctx<'_>, ns: &str) -> Result<Value, ApiError> {
    let res = namespaces();
    let kv = ctx
        .state
        .store
        .get(&res.key(None, ns), Consistency::Local)
        .await
        .map_err(|e| ApiError::from_store(e, object::subject(res, ns)))?
        .ok_or_else(|| ApiError::not_found(object::subject(res, ns)))?;
    object::from_kv(&kv)
}

/// New objects may only go into a namespace that exists and is not being deleted.
pub async fn check_active(ctx: &Ctx<'_>, ns: &str) -> Result<(), ApiError> {
    let obj = get(ctx, ns).await?;
    if obj.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating") {
        return Err(ApiError::Forbidden(format!(
            "unable to create new content in namespace {ns} because it is being terminated"
        )));
    }
    Ok(())
}

/// Deleting a namespace marks it Terminating; the namespace controller deletes its content
/// and then its finalizer (`finalize`), after which it goes. One without finalizers goes now.
pub async fn delete(ctx: &Ctx<'_>) -> Result<HttpResponse, ApiError> {
    for _ in 0..WRITE_ATTEMPTS {
        let (mut obj, kv) = ctx.load().await?;
        if finalizers_done(&obj) {
            return remove(ctx, obj, kv.mod_revision).await;
        }
        if obj.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating") {
            return Ok(respond(ctx, 200, obj, &[]));
        }
        let m = object::meta_mut(&mut obj);
        m.insert("deletionTimestamp".into(), json!(object::now()));
        m.insert("deletionGracePeriodSeconds".into(), json!(0));
        obj["status"]["phase"] = json!("Terminating");
        if ctx.q.dry_run() {
            return Ok(respond(ctx, 200, obj, &[]));
        }
        match ctx
            .state
            .store
            .update(&ctx.key(), object::to_bytes(&obj)?, Some(kv.mod_revision))
            .await
        {
            Ok(rev) => {
                object::set_rv(&mut obj, rev);
                return Ok(respond(ctx, 200, obj, &[]));
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(ctx.store_err(e)),
        }
    }
    Err(ApiError::conflict(object::subject(ctx.res(), ctx.name())))
}

/// Neither `spec.finalizers` nor `metadata.finalizers` hold the namespace.
fn finalizers_done(obj: &Value) -> bool {
    let empty = |p: &str| {
        obj.pointer(p)
            .and_then(Value::as_array)
            .is_none_or(|f| f.is_empty())
    };
    empty("/spec/finalizers") && empty("/metadata/finalizers")
}

async fn remove(ctx: &Ctx<'_>, mut obj: Value, rev: u64) -> Result<HttpResponse, ApiError> {
    if ctx.q.dry_run() {
        return Ok(respond(ctx, 200, obj, &[]));
    }
    let kv = ctx
        .state
        .store
        .delete(&ctx.key(), Some(rev))
        .await
        .map_err(|e| ctx.store_err(e))?;
    object::set_rv(&mut obj, kv.mod_revision);
    info!(namespace = %ctx.name(), "namespace deleted");
    Ok(respond(ctx, 200, obj, &[]))
}

/// `PUT namespaces/{name}/finalize`: sets `spec.finalizers` (nothing else); a namespace being
/// deleted whose last finalizer this removes goes.
pub async fn finalize(ctx: &Ctx<'_>, body: &Value) -> Result<HttpResponse, ApiError> {
    let wanted = body
        .pointer("/spec/finalizers")
        .cloned()
        .unwrap_or_else(|| json!([]));
    let Some(list) = wanted.as_array() else {
        return Err(ApiError::BadRequest(
            "spec.finalizers must be a list".into(),
        ));
    };
    let mut causes = Vec::new();
    for (i, f) in list.iter().enumerate() {
        let name = f.as_str().unwrap_or("");
        let standard = name == "kubernetes" || name.contains('/');
        if !standard {
            causes.push(Cause::invalid(
                format!("spec.finalizers[{i}]"),
                format!("{name:?}"),
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid("", "Namespace", ctx.name(), causes));
    }
    for _ in 0..WRITE_ATTEMPTS {
        let (mut obj, kv) = ctx.load().await?;
        obj["spec"]["finalizers"] = wanted.clone();
        let deleting = obj
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|t| !t.is_null());
        if deleting && finalizers_done(&obj) {
            return remove(ctx, obj, kv.mod_revision).await;
        }
        if ctx.q.dry_run() {
            return Ok(respond(ctx, 200, obj, &[]));
        }
        match ctx
            .state
            .store
            .update(&ctx.key(), object::to_bytes(&obj)?, Some(kv.mod_revision))
            .await
        {
            Ok(rev) => {
                object::set_rv(&mut obj, rev);
                return Ok(respond(ctx, 200, obj, &[]));
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(ctx.store_err(e)),
        }
    }
    Err(ApiError::conflict(object::subject(ctx.res(), ctx.name())))
}

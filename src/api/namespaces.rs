//! Namespaces: the ones a new cluster has, creation only into active ones, and deletion that
//! removes everything inside.

use std::time::Duration;

use actix_web::HttpResponse;
use serde_json::{json, Value};
use tracing::{info, warn};

use super::object;
use super::request::{respond, Ctx};
use super::resources::{self, RESOURCES};
use super::status::ApiError;
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
            super::defaults::apply("Namespace", &mut obj);
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

/// New objects may only go into a namespace that exists and is not being deleted.
pub async fn check_active(ctx: &Ctx<'_>, ns: &str) -> Result<(), ApiError> {
    let res = namespaces();
    let kv = ctx
        .state
        .store
        .get(&res.key(None, ns), Consistency::Local)
        .await
        .map_err(|e| ApiError::from_store(e, object::subject(res, ns)))?
        .ok_or_else(|| ApiError::not_found(object::subject(res, ns)))?;
    let obj = object::from_kv(&kv)?;
    if obj.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating") {
        return Err(ApiError::Forbidden(format!(
            "unable to create new content in namespace {ns} because it is being terminated"
        )));
    }
    Ok(())
}

/// Marks the namespace Terminating and removes its content in the background, then the
/// namespace itself.
pub async fn delete(ctx: &Ctx<'_>) -> Result<HttpResponse, ApiError> {
    let (mut obj, kv) = ctx.load().await?;
    let name = ctx.name().to_string();
    if obj.pointer("/status/phase").and_then(Value::as_str) != Some("Terminating") {
        let m = object::meta_mut(&mut obj);
        m.insert("deletionTimestamp".into(), json!(object::now()));
        m.insert("deletionGracePeriodSeconds".into(), json!(0));
        obj["status"] = json!({"phase": "Terminating"});
        if ctx.q.dry_run() {
            return Ok(respond(ctx, 200, obj, &[]));
        }
        let rev = ctx
            .state
            .store
            .update(&ctx.key(), object::to_bytes(&obj)?, Some(kv.mod_revision))
            .await
            .map_err(|e| ctx.store_err(e))?;
        object::set_rv(&mut obj, rev);
        let store = ctx.state.store.clone();
        actix_web::rt::spawn(async move { empty_and_remove(store, name).await });
    }
    Ok(respond(ctx, 200, obj, &[]))
}

async fn empty_and_remove(store: StoreClient, ns: String) {
    for attempt in 0..100u32 {
        match remove_content(&store, &ns).await {
            Ok(()) => break,
            Err(e) => {
                warn!(namespace = %ns, attempt, "emptying namespace: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    match store.delete(&namespaces().key(None, &ns), None).await {
        Ok(_) | Err(StoreError::NotFound { .. }) => info!(namespace = %ns, "namespace deleted"),
        Err(e) => warn!(namespace = %ns, "deleting namespace: {e}"),
    }
}

async fn remove_content(store: &StoreClient, ns: &str) -> Result<(), StoreError> {
    for res in RESOURCES.iter().filter(|r| r.namespaced) {
        let page = store
            .list(
                &res.scope_prefix(Some(ns)),
                None,
                0,
                Consistency::Linearizable,
            )
            .await?;
        for kv in page.kvs {
            // A Service's allocations are released with it.
            let stored: Value = match res.kind {
                "Service" => serde_json::from_slice(&kv.value).unwrap_or_default(),
                _ => Value::Null,
            };
            match super::services::delete(store, res.kind, &kv.key, None, &stored).await {
                Ok(_) | Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

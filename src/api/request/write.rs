//! Writes below the handlers: admission (defaults, RBAC checks on the body, validation),
//! read-modify-write with optimistic concurrency, and the removal of an object whose last
//! finalizer is gone.

use serde_json::Value;

use super::Ctx;
use crate::api::admission;
use crate::api::object::{self, subject};
use crate::api::registry::Storage;
use crate::api::resources::Resource;
use crate::api::services;
use crate::api::status::ApiError;

/// Writes are retried this many times when they lose an optimistic-concurrency race that
/// the client did not ask to detect (no resourceVersion precondition).
pub const WRITE_ATTEMPTS: usize = 8;

/// Admission of a new object: mutating plugins, the kind's strategy (defaults, preparation,
/// validation), validating plugins. Returns warnings.
pub async fn admit_create(ctx: &Ctx<'_>, obj: &mut Value) -> Result<Vec<String>, ApiError> {
    admission::mutate_create(ctx, obj).await?;
    let res = ctx.res();
    let mut warnings = res
        .strategy
        .admit_create(res, obj, ctx.field_validation()?)?;
    warnings.extend(admission::validate_create(ctx, obj).await?);
    Ok(warnings)
}

/// Admission of an update of `old`: the kind's strategy, then validating plugins.
pub async fn admit_update(
    ctx: &Ctx<'_>,
    old: &Value,
    new: &mut Value,
) -> Result<Vec<String>, ApiError> {
    let res = ctx.res();
    let mut warnings = res
        .strategy
        .admit_update(res, old, new, ctx.field_validation()?)?;
    warnings.extend(admission::validate_update(ctx, old, new).await?);
    Ok(warnings)
}

/// Whether writing `new` removes the object: it is being deleted (not gracefully) and its last
/// finalizer is gone (for a namespace, the ones in its spec too).
pub fn removes(res: &Resource, new: &Value) -> bool {
    if res.strategy.finalizing(new) {
        return false;
    }
    let finalizers_empty = new
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_none_or(|f| f.is_empty());
    // A graceful deletion (a pod on a node) waits for its node agent, finalizers or not.
    let graceful = new
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|g| g > 0);
    let deleting = !graceful
        && new
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null());
    deleting && finalizers_empty
}

/// Writes `new` over the stored object `old` read at `old_rev`; an object being deleted whose
/// last finalizer is gone is removed instead. Returns what was written.
pub async fn store_update(
    ctx: &Ctx<'_>,
    old: &Value,
    mut new: Value,
    old_rev: u64,
) -> Result<Value, ApiError> {
    if ctx.q.dry_run() {
        return Ok(new);
    }
    let rev = if removes(ctx.res(), &new) {
        let (store, storage, key) = (&ctx.state.store, ctx.res().strategy.storage(), ctx.key());
        let gone = services::delete(store, storage, &key, Some(old_rev), old).await;
        gone.map_err(|e| ctx.store_err(e))?
    } else {
        let bytes = object::to_bytes(&new)?;
        let rev = ctx
            .state
            .store
            .update(&ctx.key(), bytes, Some(old_rev))
            .await;
        rev.map_err(|e| ctx.store_err(e))?
    };
    object::set_rv(&mut new, rev);
    Ok(new)
}

/// Read-modify-write with optimistic concurrency. `change` builds the new object from the
/// current one; a precondition on resourceVersion (from the client) is never retried.
pub async fn guaranteed_update<F>(
    ctx: &Ctx<'_>,
    status_only: bool,
    mut change: F,
) -> Result<(Value, Vec<String>), ApiError>
where
    F: FnMut(&Value) -> Result<(Value, bool), ApiError>,
{
    for attempt in 0..WRITE_ATTEMPTS {
        let (old, kv) = ctx.load_for_write(attempt).await?;
        let (mut new, precondition) = change(&old)?;
        if precondition {
            if let Some(rv) = object::client_rv(&new)? {
                if rv != kv.mod_revision {
                    if attempt == 0 {
                        continue; // maybe only this replica's read was behind
                    }
                    return Err(ApiError::conflict(subject(ctx.res(), ctx.name())));
                }
            }
        }
        object::prepare_update(ctx.res(), &old, &mut new, status_only)?;
        let allocating = ctx.res().strategy.storage() == Storage::ServiceAllocations;
        let warnings = if status_only {
            admission::validate_status_update(ctx, &old, &new).await?;
            Vec::new()
        } else {
            admit_update(ctx, &old, &mut new).await?
        };
        let written = if allocating && !status_only && !removes(ctx.res(), &new) {
            let (who, target) = (
                subject(ctx.res(), ctx.name()),
                services::Write::Update(ctx.key(), kv.mod_revision),
            );
            ctx.services().write(&who, Some(&old), new, target).await
        } else {
            store_update(ctx, &old, new, kv.mod_revision).await
        };
        match written {
            Err(ApiError::Conflict { .. }) if !precondition || attempt == 0 => continue,
            other => return other.map(|obj| (obj, warnings)),
        }
    }
    Err(ApiError::conflict(subject(ctx.res(), ctx.name())))
}

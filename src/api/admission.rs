//! Admission plugins around a kind's strategy, as kube-apiserver runs them: mutating ones
//! before the strategy defaults and validates, validating ones after. Each plugin says which
//! resources it concerns, as upstream's do.

use serde_json::Value;

use super::auth::UserInfo;
use super::registry::core::{pod, service};
use super::request::Ctx;
use super::status::ApiError;

fn is(ctx: &Ctx<'_>, res: &super::resources::Resource) -> bool {
    std::ptr::eq(ctx.res(), res)
}

/// DenyServiceExternalIPs, unless the configuration allows them.
fn deny_external_ips(ctx: &Ctx<'_>, obj: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    if ctx.state.allow_external_ips || !is(ctx, &service::RESOURCE) {
        return Ok(());
    }
    super::services::external_ips::admit(obj, old)
}

/// Mutating plugins on create: ServiceAccount (a pod's account and token volume) and
/// DefaultTolerationSeconds (pods tolerate a failing node for a while).
pub async fn mutate_create(ctx: &Ctx<'_>, obj: &mut Value) -> Result<(), ApiError> {
    if is(ctx, &pod::RESOURCE) {
        super::serviceaccounts::admit_pod(ctx, obj).await?;
        super::defaults::pod_tolerations(obj, ctx.state.toleration_seconds);
    }
    Ok(())
}

/// Validating plugins on create: NamespaceLifecycle (nothing new in a namespace being
/// deleted), NodeRestriction (a node creates only its own Node and Lease), PodSecurity and
/// RBAC's escalation check. Returns warnings.
pub async fn validate_create(ctx: &Ctx<'_>, obj: &Value) -> Result<Vec<String>, ApiError> {
    if ctx.res().namespaced {
        if let Some(ns) = obj.pointer("/metadata/namespace").and_then(Value::as_str) {
            super::namespaces::check_active(ctx, ns).await?;
        }
    }
    super::auth::node_restriction::admit_create(&UserInfo::of(ctx.req), ctx.res(), obj)?;
    deny_external_ips(ctx, obj, None)?;
    let warnings = super::podsecurity::admit(ctx, obj, None).await?;
    super::auth::rbac::admit(ctx, obj)?;
    Ok(warnings)
}

/// Validating plugins on a status update of `old`: NodeRestriction.
pub async fn validate_status_update(
    ctx: &Ctx<'_>,
    old: &Value,
    obj: &Value,
) -> Result<(), ApiError> {
    super::auth::node_restriction::admit_update(ctx, old, obj, true).await
}

/// Validating plugins on update of `old`: PodSecurity and RBAC's escalation check. Returns
/// warnings.
pub async fn validate_update(
    ctx: &Ctx<'_>,
    old: &Value,
    obj: &Value,
) -> Result<Vec<String>, ApiError> {
    super::auth::node_restriction::admit_update(ctx, old, obj, false).await?;
    deny_external_ips(ctx, obj, Some(old))?;
    let warnings = super::podsecurity::admit(ctx, obj, Some(old)).await?;
    super::auth::rbac::admit(ctx, obj)?;
    Ok(warnings)
}

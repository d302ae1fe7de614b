//! CronJob status: the active Jobs as references, lastScheduleTime, lastSuccessfulTime;
//! written through the status subresource.

use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::Value;

use crate::controllers::runtime::ReconcileError;

pub fn job_ref(j: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: j.metadata.name.clone(),
        namespace: j.metadata.namespace.clone(),
        uid: j.metadata.uid.clone(),
        resource_version: j.metadata.resource_version.clone(),
        ..Default::default()
    }
}

pub async fn write(
    client: &kube::Client,
    cj: &CronJob,
    new: &CronJobStatus,
) -> Result<(), ReconcileError> {
    let old = cj.status.clone().unwrap_or_default();
    if &old == new {
        return Ok(());
    }
    let to = |s: &CronJobStatus| {
        serde_json::to_value(s).map_err(|e| ReconcileError::Other(e.to_string()))
    };
    let (old, mut patch) = (to(&old)?, to(new)?);
    // Fields gone from the new status are cleared.
    if let (Some(o), Some(n)) = (old.as_object(), patch.as_object_mut()) {
        for k in o.keys() {
            n.entry(k.clone()).or_insert(Value::Null);
        }
    }
    let api: Api<CronJob> = Api::namespaced(client.clone(), &cj.namespace().unwrap_or_default());
    api.patch_status(
        &cj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": patch })),
    )
    .await?;
    Ok(())
}

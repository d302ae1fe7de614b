//! Pods of a Job, from `spec.template`: owned by the Job, labelled as upstream labels them
//! (the API server does not generate the selector labels, so the controller adds them), and
//! in Indexed mode carrying their completion index and a stable hostname.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::indexed::INDEX_KEY;
use crate::controllers::pods::owner_ref;
use crate::controllers::runtime::ReconcileError;

pub fn pod(job: &Job, index: Option<i32>) -> Result<Pod, ReconcileError> {
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .ok_or_else(|| ReconcileError::Other("Job without spec".into()))?;
    let name = job.name_any();
    let uid = job.uid().unwrap_or_default();
    let tm = template.metadata.unwrap_or_default();
    let mut labels = tm.labels.unwrap_or_default();
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", &uid),
        ("batch.kubernetes.io/job-name", &name),
        ("controller-uid", &uid),
        ("job-name", &name),
    ] {
        labels.entry(k.into()).or_insert_with(|| v.clone());
    }
    let mut annotations = tm.annotations.unwrap_or_default();
    let mut spec = template.spec;
    let generate_name = match index {
        Some(i) => {
            labels.insert(INDEX_KEY.into(), i.to_string());
            annotations.insert(INDEX_KEY.into(), i.to_string());
            if let Some(s) = spec.as_mut() {
                if s.hostname.is_none() {
                    s.hostname = Some(format!("{name}-{i}"));
                }
                let containers = s
                    .containers
                    .iter_mut()
                    .chain(s.init_containers.iter_mut().flatten());
                for c in containers {
                    let env = c.env.get_or_insert_with(Vec::new);
                    if !env.iter().any(|e| e.name == "JOB_COMPLETION_INDEX") {
                        // The literal value: the pod is made for this one index.
                        env.push(EnvVar {
                            name: "JOB_COMPLETION_INDEX".into(),
                            value: Some(i.to_string()),
                            value_from: None,
                        });
                    }
                }
            }
            format!("{name}-{i}-")
        }
        None => format!("{name}-"),
    };
    Ok(Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.namespace(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            finalizers: tm.finalizers,
            owner_references: Some(vec![owner_ref("batch/v1", "Job", &job.metadata)]),
            ..Default::default()
        },
        spec,
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn indexed_pods_carry_index_env_hostname_and_job_labels() {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "j", "namespace": "ns", "uid": "u1"},
            "spec": {"template": {"metadata": {"labels": {"app": "x"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}},
        }))
        .expect("job");
        let p = pod(&job, Some(3)).expect("pod");
        assert_eq!(p.metadata.generate_name.as_deref(), Some("j-3-"));
        let labels = p.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels["app"], "x");
        assert_eq!(labels["batch.kubernetes.io/controller-uid"], "u1");
        assert_eq!(labels["job-name"], "j");
        assert_eq!(p.metadata.annotations.unwrap_or_default()[INDEX_KEY], "3");
        let spec = p.spec.expect("spec");
        assert_eq!(spec.hostname.as_deref(), Some("j-3"));
        let env = spec.containers[0].env.clone().unwrap_or_default();
        assert_eq!(env[0].value.as_deref(), Some("3"));
        let owner = &p.metadata.owner_references.unwrap_or_default()[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("Job", Some(true)));
        let plain = pod(&job, None).expect("pod");
        assert_eq!(plain.metadata.generate_name.as_deref(), Some("j-"));
    }
}

//! Server-side defaults, as upstream's defaulting functions set them for the fields Skiff
//! uses, so `kubectl describe`, `get -o yaml` and the controllers see what they expect.

use serde_json::{json, Map, Value};

/// Sets `key` in `map` to `value` when absent (or null).
fn default(map: &mut Map<String, Value>, key: &str, value: Value) {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.into(), value);
    }
}

fn object_at<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    let obj = v.as_object_mut()?;
    if obj.get(key).is_none_or(Value::is_null) {
        obj.insert(key.into(), json!({}));
    }
    obj.get_mut(key)?.as_object_mut()
}

pub fn apply(kind: &str, obj: &mut Value) {
    match kind {
        "Pod" => {
            if let Some(spec) = obj.get_mut("spec") {
                pod_spec(spec);
            }
            if let Some(status) = object_at(obj, "status") {
                default(status, "phase", json!("Pending"));
            }
        }
        "Deployment" => {
            if let Some(spec) = object_at(obj, "spec") {
                default(spec, "replicas", json!(1));
                default(spec, "revisionHistoryLimit", json!(10));
                default(spec, "progressDeadlineSeconds", json!(600));
                default(spec, "strategy", json!({}));
                if let Some(s) = spec.get_mut("strategy").and_then(Value::as_object_mut) {
                    default(s, "type", json!("RollingUpdate"));
                    if s.get("type") == Some(&json!("RollingUpdate")) {
                        default(s, "rollingUpdate", json!({}));
                        if let Some(ru) = s.get_mut("rollingUpdate").and_then(Value::as_object_mut)
                        {
                            default(ru, "maxUnavailable", json!("25%"));
                            default(ru, "maxSurge", json!("25%"));
                        }
                    }
                }
            }
            template(obj);
        }
        "ReplicaSet" => {
            if let Some(spec) = object_at(obj, "spec") {
                default(spec, "replicas", json!(1));
            }
            template(obj);
        }
        "StatefulSet" => {
            if let Some(spec) = object_at(obj, "spec") {
                default(spec, "replicas", json!(1));
                default(spec, "podManagementPolicy", json!("OrderedReady"));
                default(spec, "revisionHistoryLimit", json!(10));
                default(
                    spec,
                    "updateStrategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
                );
                default(
                    spec,
                    "persistentVolumeClaimRetentionPolicy",
                    json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
                );
            }
            template(obj);
        }
        "DaemonSet" => {
            if let Some(spec) = object_at(obj, "spec") {
                default(spec, "revisionHistoryLimit", json!(10));
                default(
                    spec,
                    "updateStrategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
                );
            }
            template(obj);
        }
        "Job" => {
            job_spec(obj.get_mut("spec"));
        }
        "CronJob" => {
            if let Some(spec) = object_at(obj, "spec") {
                default(spec, "concurrencyPolicy", json!("Allow"));
                default(spec, "suspend", json!(false));
                default(spec, "successfulJobsHistoryLimit", json!(3));
                default(spec, "failedJobsHistoryLimit", json!(1));
            }
            job_spec(obj.pointer_mut("/spec/jobTemplate/spec"));
        }
        "Service" => service(obj),
        "Namespace" => {
            if let Some(spec) = object_at(obj, "spec") {
                default(spec, "finalizers", json!(["kubernetes"]));
            }
            if let Some(status) = object_at(obj, "status") {
                default(status, "phase", json!("Active"));
            }
        }
        "Secret" => {
            if let Some(o) = obj.as_object_mut() {
                default(o, "type", json!("Opaque"));
            }
        }
        "PersistentVolumeClaim" | "PersistentVolume" => {
            if let Some(spec) = object_at(obj, "spec") {
                default(spec, "volumeMode", json!("Filesystem"));
                if kind == "PersistentVolume" {
                    default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
                }
            }
            if let Some(status) = object_at(obj, "status") {
                default(status, "phase", json!("Pending"));
            }
        }
        _ => {}
    }
}

/// Upstream's DefaultTolerationSeconds admission: every pod tolerates a not-ready or
/// unreachable node for a while before it is evicted.
pub fn pod_tolerations(obj: &mut Value, seconds: u64) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let list = spec.entry("tolerations").or_insert_with(|| json!([]));
    let Some(list) = list.as_array_mut() else {
        return;
    };
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let covered = list.iter().any(|t| {
            let k = t.get("key").and_then(Value::as_str).unwrap_or("");
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            (k == key || (k.is_empty() && t.get("operator") == Some(&json!("Exists"))))
                && (effect.is_empty() || effect == "NoExecute")
        });
        if !covered {
            list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}));
        }
    }
}

/// Upstream's storage object in use protection: a claim goes only once no pod uses it (the
/// volume controller removes the finalizer).
pub const CLAIM_PROTECTION: &str = "kubernetes.io/pvc-protection";

/// On create: the claim protection finalizer.
pub fn claim_protection(obj: &mut Value) {
    let Some(meta) = object_at(obj, "metadata") else {
        return;
    };
    let finalizers = meta.entry("finalizers").or_insert_with(|| json!([]));
    if let Some(list) = finalizers.as_array_mut() {
        if !list.iter().any(|f| f == CLAIM_PROTECTION) {
            list.push(json!(CLAIM_PROTECTION));
        }
    }
}

/// On create (the uid is known then): unless `manualSelector`, a Job selects its pods by its
/// uid, and its template carries the labels upstream adds.
pub fn job_selector(obj: &mut Value) {
    let (Some(uid), Some(name)) = (
        obj.pointer("/metadata/uid").cloned(),
        obj.pointer("/metadata/name").cloned(),
    ) else {
        return;
    };
    let Some(spec) = object_at(obj, "spec") else {
        return;
    };
    if spec.get("manualSelector") == Some(&json!(true)) {
        return;
    }
    spec.insert(
        "selector".into(),
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
    );
    let labels = json!({
        "batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
        "controller-uid": uid, "job-name": name,
    });
    let template = spec.entry("template").or_insert_with(|| json!({}));
    if let Some(meta) = object_at(template, "metadata") {
        let existing = meta.entry("labels").or_insert_with(|| json!({}));
        if let (Some(have), Some(add)) = (existing.as_object_mut(), labels.as_object()) {
            have.extend(add.clone());
        }
    }
}

fn job_spec(spec: Option<&mut Value>) {
    let Some(spec) = spec else { return };
    if let Some(s) = spec.as_object_mut() {
        let parallel = s.get("parallelism").cloned();
        default(s, "parallelism", json!(1));
        if parallel.is_none() || s.get("completions").is_some() {
            default(s, "completions", json!(1));
        }
        default(s, "backoffLimit", json!(6));
        default(s, "completionMode", json!("NonIndexed"));
        default(s, "suspend", json!(false));
    }
    if let Some(t) = spec.pointer_mut("/template/spec") {
        pod_spec(t);
    }
}

fn template(obj: &mut Value) {
    if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
        pod_spec(spec);
    }
}

fn pod_spec(spec: &mut Value) {
    let Some(s) = spec.as_object_mut() else {
        return;
    };
    default(s, "restartPolicy", json!("Always"));
    default(s, "terminationGracePeriodSeconds", json!(30));
    default(s, "dnsPolicy", json!("ClusterFirst"));
    default(s, "securityContext", json!({}));
    default(s, "schedulerName", json!("default-scheduler"));
    // Upstream's conversion: the deprecated `serviceAccount` mirrors `serviceAccountName`
    // (an old client may have set only `serviceAccount`). Pods get `default` on admission.
    let account = ["serviceAccountName", "serviceAccount"]
        .iter()
        .filter_map(|k| s.get(*k).and_then(Value::as_str))
        .find(|n| !n.is_empty())
        .map(String::from);
    if let Some(a) = account {
        s.insert("serviceAccountName".into(), json!(a));
        s.insert("serviceAccount".into(), json!(a));
    }
    for list in ["initContainers", "containers"] {
        if let Some(Value::Array(cs)) = s.get_mut(list) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                container(c);
            }
        }
    }
}

fn container(c: &mut Map<String, Value>) {
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    let tag = image
        .rsplit('/')
        .next()
        .and_then(|last| last.split_once(':'))
        .map(|(_, t)| t);
    let pull = if image.contains('@') || tag.is_some_and(|t| t != "latest") {
        "IfNotPresent"
    } else {
        "Always"
    };
    default(c, "imagePullPolicy", json!(pull));
    default(c, "terminationMessagePath", json!("/dev/termination-log"));
    default(c, "terminationMessagePolicy", json!("File"));
    default(c, "resources", json!({}));
    if let Some(Value::Array(ports)) = c.get_mut("ports") {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default(p, "protocol", json!("TCP"));
        }
    }
}

fn service(obj: &mut Value) {
    let Some(spec) = object_at(obj, "spec") else {
        return;
    };
    default(spec, "type", json!("ClusterIP"));
    default(spec, "sessionAffinity", json!("None"));
    let external_name = spec.get("type") == Some(&json!("ExternalName"));
    if !external_name {
        default(spec, "internalTrafficPolicy", json!("Cluster"));
        default(spec, "ipFamilyPolicy", json!("SingleStack"));
        default(spec, "ipFamilies", json!(["IPv4"]));
    }
    if matches!(
        spec.get("type").and_then(Value::as_str),
        Some("NodePort" | "LoadBalancer")
    ) {
        default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if spec.get("type") == Some(&json!("LoadBalancer")) {
        default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    // A client that sets only the singular field (an old one) gets the plural too.
    let ip = spec.get("clusterIP").and_then(Value::as_str).unwrap_or("");
    if !ip.is_empty()
        && spec
            .get("clusterIPs")
            .is_none_or(|v| v == &json!([]) || v.is_null())
    {
        spec.insert("clusterIPs".into(), json!([ip]));
    }
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default(p, "protocol", json!("TCP"));
            if let Some(port) = p.get("port").cloned() {
                default(p, "targetPort", port);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_defaults_match_upstream() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}]}}}});
        apply("Deployment", &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            (
                c["imagePullPolicy"].as_str(),
                c["ports"][0]["protocol"].as_str()
            ),
            (Some("IfNotPresent"), Some("TCP"))
        );
        let mut latest =
            json!({"spec": {"containers": [{"name": "a", "image": "registry:5000/busybox"}]}});
        apply("Pod", &mut latest);
        assert_eq!(latest["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(latest["status"]["phase"], "Pending");
    }

    #[test]
    fn recreate_strategy_gets_no_rolling_update() {
        let mut d = json!({"spec": {"strategy": {"type": "Recreate"}}});
        apply("Deployment", &mut d);
        assert!(d["spec"]["strategy"].get("rollingUpdate").is_none());
    }
}

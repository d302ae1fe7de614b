//! The strategies through `Rest`, as the handlers use them: defaults, create validation,
//! and one case per class of field an update may not change, with upstream's messages.

use serde_json::{json, Value};

use crate::api::resources::{find, Resource};
use crate::api::status::ApiError;
use crate::api::validate::FieldValidation;

fn res(group: &str, plural: &str) -> &'static Resource {
    find(group, "v1", plural).expect("served")
}

fn created(r: &Resource, mut obj: Value) -> Value {
    r.strategy
        .admit_create(r, &mut obj, FieldValidation::Strict)
        .expect("valid");
    obj
}

/// The causes (field, message) of an invalid create.
fn create_causes(r: &Resource, mut obj: Value) -> Vec<(String, String)> {
    match r
        .strategy
        .admit_create(r, &mut obj, FieldValidation::Strict)
    {
        Err(ApiError::Invalid { causes, .. }) => {
            causes.into_iter().map(|c| (c.field, c.message)).collect()
        }
        Ok(_) => Vec::new(),
        Err(e) => panic!("{e}"),
    }
}

/// The full 422 message of an update of `old` to `new`, or `None` if it is allowed.
fn update_error(r: &Resource, old: &Value, mut new: Value) -> Option<String> {
    match r
        .strategy
        .admit_update(r, old, &mut new, FieldValidation::Strict)
    {
        Ok(_) => None,
        Err(ApiError::Invalid { message, .. }) => Some(message),
        Err(e) => panic!("{e}"),
    }
}

fn meta(name: &str) -> Value {
    json!({"name": name, "namespace": "ns", "uid": "u1", "creationTimestamp": "2026-01-01T00:00:00Z"})
}

fn pod() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta("p"), "spec": {
        "containers": [{"name": "c", "image": "busybox:1.36"}],
        "volumes": [{"name": "data", "emptyDir": {}}],
        "tolerations": [{"key": "a", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}],
    }})
}

fn deployment(app: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("web"), "spec": {
        "selector": {"matchLabels": {"app": app}},
        "template": {"metadata": {"labels": {"app": app}}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "ports": [{"containerPort": 80}]}]}},
    }})
}

#[test]
fn deployment_defaults_match_upstream() {
    let d = created(res("apps", "deployments"), deployment("web"));
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
    assert_eq!(d["status"], json!({}), "status: {{}} as upstream");
    let mut recreate = deployment("web");
    recreate["spec"]["strategy"] = json!({"type": "Recreate"});
    let r = created(res("apps", "deployments"), recreate);
    assert!(r["spec"]["strategy"].get("rollingUpdate").is_none());
    let p = created(res("", "pods"), pod());
    assert_eq!(p["status"]["phase"], "Pending");
    assert_eq!(
        p["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
}

#[test]
fn create_validation_names_the_field() {
    let mut bad = deployment("web");
    bad["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
    bad["spec"]["template"]["spec"]["containers"] =
        json!([{"name": "a"}, {"name": "a", "image": "x"}]);
    let fields: Vec<String> = create_causes(res("apps", "deployments"), bad)
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    for want in [
        "spec.template.metadata.labels",
        "spec.template.spec.containers[0].image",
        "spec.template.spec.containers[1].name",
    ] {
        assert!(fields.iter().any(|f| f == want), "{want} in {fields:?}");
    }
    let no_selector = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("d"), "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}});
    let causes = create_causes(res("apps", "deployments"), no_selector);
    assert!(
        causes.contains(&("spec.selector".into(), "Required value".into())),
        "{causes:?}"
    );
    let mut volume = pod();
    volume["spec"]["volumes"] = json!([{"name": "/root/.ssh", "hostPath": {"path": "/x"}}]);
    let causes = create_causes(res("", "pods"), volume);
    assert_eq!(causes[0].0, "spec.volumes[0].name", "{causes:?}");
    let named = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}});
    assert_eq!(
        create_causes(res("", "configmaps"), named)[0].0,
        "metadata.name"
    );
}

#[test]
fn unknown_fields_are_refused_under_strict_and_reported_under_warn() {
    let r = res("", "configmaps");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "creationTimestamp": null}, "data": {"a": "b"}, "dta": {}});
    let mut strict = cm.clone();
    assert!(matches!(
        r.strategy.admit_create(r, &mut strict, FieldValidation::Strict),
        Err(ApiError::BadRequest(m)) if m.contains("unknown field \"dta\"")
    ));
    let mut warn = cm.clone();
    let warnings = r
        .strategy
        .admit_create(r, &mut warn, FieldValidation::Warn)
        .expect("warn");
    assert_eq!(warnings, ["unknown field \"dta\""]);
    assert!(warn.get("dta").is_none(), "unknown fields are dropped");
    let mut wrong = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": 1}});
    assert!(matches!(
        r.strategy
            .admit_create(r, &mut wrong, FieldValidation::Ignore),
        Err(ApiError::BadRequest(_))
    ));
}

#[test]
fn secrets_fold_string_data_into_data() {
    let s = created(
        res("", "secrets"),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta("s"), "stringData": {"pw": "hunter2"}}),
    );
    assert_eq!(s["data"]["pw"], "aHVudGVyMg==");
    assert!(s.get("stringData").is_none());
    assert_eq!(s["type"], "Opaque");
}

#[test]
fn pod_spec_is_fixed_but_for_what_upstream_lets_change() {
    let r = res("", "pods");
    let old = created(r, pod());
    let mut image = old.clone();
    image["spec"]["containers"][0]["image"] = json!("busybox:1.37");
    image["metadata"]["labels"] = json!({"new": "label"});
    assert_eq!(
        update_error(r, &old, image),
        None,
        "images and labels change"
    );
    let mut added = old.clone();
    added["spec"]["tolerations"]
        .as_array_mut()
        .expect("list")
        .push(json!({"key": "b", "operator": "Exists"}));
    assert_eq!(
        update_error(r, &old, added),
        None,
        "tolerations may be added"
    );
    let mut secret = old.clone();
    secret["spec"]["volumes"]
        .as_array_mut()
        .expect("list")
        .push(json!({"name": "stolen", "secret": {"secretName": "admin"}}));
    let msg = update_error(r, &old, secret).expect("a volume may not be added");
    assert!(msg.starts_with("Pod \"p\" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"), "{msg}");
    let mut account = old.clone();
    account["spec"]["serviceAccountName"] = json!("admin");
    assert!(update_error(r, &old, account).is_some());
    let mut removed = old.clone();
    removed["spec"]["tolerations"] = json!([]);
    assert_eq!(
        update_error(r, &old, removed).as_deref(),
        Some("Pod \"p\" is invalid: spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds")
    );
    let mut deadline = old.clone();
    deadline["spec"]["activeDeadlineSeconds"] = json!(100);
    let with_deadline = {
        let mut n = deadline.clone();
        assert_eq!(
            update_error(r, &old, deadline),
            None,
            "a deadline may be set"
        );
        n["spec"]["activeDeadlineSeconds"] = json!(100);
        n
    };
    let mut longer = with_deadline.clone();
    longer["spec"]["activeDeadlineSeconds"] = json!(200);
    assert_eq!(
        update_error(r, &with_deadline, longer).as_deref(),
        Some("Pod \"p\" is invalid: spec.activeDeadlineSeconds: Invalid value: 200: must be less than or equal to previous value")
    );
}

#[test]
fn workload_selectors_are_immutable() {
    for plural in ["deployments", "replicasets", "daemonsets"] {
        let r = res("apps", plural);
        let mut d = deployment("web");
        d["kind"] = json!(r.kind);
        let old = created(r, d.clone());
        let mut new = deployment("other");
        new["kind"] = json!(r.kind);
        let msg = update_error(r, &old, new).expect(plural);
        assert!(
            msg.contains(r#"spec.selector: Invalid value: {"matchLabels":{"app":"other"}}: field is immutable"#),
            "{plural}: {msg}"
        );
        let mut scaled = old.clone();
        scaled["spec"]["template"]["spec"]["containers"][0]["image"] = json!("busybox:1.37");
        assert_eq!(
            update_error(r, &old, scaled),
            None,
            "{plural}: the template changes"
        );
    }
}

#[test]
fn statefulset_spec_is_fixed_but_for_the_listed_fields() {
    let r = res("apps", "statefulsets");
    let mut sts = deployment("db");
    sts["kind"] = json!("StatefulSet");
    sts["spec"]["serviceName"] = json!("db");
    let old = created(r, sts);
    let mut scaled = old.clone();
    scaled["spec"]["replicas"] = json!(3);
    scaled["spec"]["minReadySeconds"] = json!(5);
    assert_eq!(update_error(r, &old, scaled), None);
    let mut renamed = old.clone();
    renamed["spec"]["serviceName"] = json!("other");
    assert_eq!(
        update_error(r, &old, renamed).as_deref(),
        Some("StatefulSet.apps \"web\" is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden")
    );
}

#[test]
fn job_selector_and_template_are_fixed_once_it_runs() {
    let r = res("batch", "jobs");
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta("j"), "spec": {
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]}}}});
    let old = created(r, job);
    assert_eq!(
        old["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
        "u1"
    );
    let mut template = old.clone();
    template["spec"]["template"]["spec"]["containers"][0]["image"] = json!("busybox:1.37");
    let msg = update_error(r, &old, template).expect("template fixed");
    assert!(msg.contains("spec.template: Invalid value: "), "{msg}");
    assert!(msg.ends_with(": field is immutable"), "{msg}");
    let mut parallel = old.clone();
    parallel["spec"]["parallelism"] = json!(3);
    assert_eq!(update_error(r, &old, parallel), None, "parallelism changes");
}

#[test]
fn claims_grow_but_keep_their_spec() {
    let r = res("", "persistentvolumeclaims");
    let claim = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta("c"), "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
    let mut old = created(r, claim);
    assert_eq!(
        old["metadata"]["finalizers"],
        json!(["kubernetes.io/pvc-protection"])
    );
    let mut bind = old.clone();
    bind["spec"]["volumeName"] = json!("pv-1");
    assert_eq!(update_error(r, &old, bind.clone()), None, "bound once");
    old = bind;
    old["status"] = json!({"phase": "Bound", "capacity": {"storage": "1Gi"}});
    let mut grow = old.clone();
    grow["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
    assert_eq!(update_error(r, &old, grow), None, "a bound claim grows");
    let mut shrink = old.clone();
    shrink["spec"]["resources"]["requests"]["storage"] = json!("512Mi");
    assert!(update_error(r, &old, shrink)
        .expect("no shrinking")
        .contains(
        "spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"
    ));
    let mut modes = old.clone();
    modes["spec"]["accessModes"] = json!(["ReadWriteMany"]);
    assert!(update_error(r, &old, modes).expect("fixed").contains(
        "spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"
    ));
}

#[test]
fn immutable_config_maps_and_secrets_keep_their_data() {
    let r = res("", "configmaps");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("c"), "data": {"a": "1"}, "immutable": true});
    let old = created(r, cm);
    let mut changed = old.clone();
    changed["data"]["a"] = json!("2");
    changed["immutable"] = json!(false);
    assert_eq!(
        update_error(r, &old, changed).as_deref(),
        Some("ConfigMap \"c\" is invalid: [immutable: Forbidden: field is immutable when `immutable` is set, data: Forbidden: field is immutable when `immutable` is set]")
    );
    let mut labelled = old.clone();
    labelled["metadata"]["labels"] = json!({"x": "y"});
    assert_eq!(
        update_error(r, &old, labelled),
        None,
        "metadata still changes"
    );
    let r = res("", "secrets");
    let s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta("s"), "data": {"a": "MQ=="}, "immutable": true});
    let old = created(r, s);
    let mut changed = old.clone();
    changed["stringData"] = json!({"a": "2"});
    assert_eq!(
        update_error(r, &old, changed).as_deref(),
        Some(
            "Secret \"s\" is invalid: data: Forbidden: field is immutable when `immutable` is set"
        )
    );
    let mut retyped = old.clone();
    retyped["type"] = json!("kubernetes.io/basic-auth");
    assert!(update_error(r, &old, retyped)
        .expect("type fixed")
        .contains("type: Invalid value: \"kubernetes.io/basic-auth\": field is immutable"));
}

#[test]
fn metadata_and_role_refs_are_fixed() {
    let r = res("", "configmaps");
    let old = created(
        r,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("c")}),
    );
    let mut uid = old.clone();
    uid["metadata"]["uid"] = json!("u2");
    assert_eq!(
        update_error(r, &old, uid).as_deref(),
        Some("ConfigMap \"c\" is invalid: metadata.uid: Invalid value: \"u2\": field is immutable")
    );
    let g = "rbac.authorization.k8s.io";
    let r = res(g, "rolebindings");
    let rb = json!({"apiVersion": format!("{g}/v1"), "kind": "RoleBinding", "metadata": meta("b"), "roleRef": {"kind": "Role", "name": "r"}, "subjects": [{"kind": "Group", "name": "devs"}]});
    let old = created(r, rb);
    assert_eq!(old["roleRef"]["apiGroup"], g, "defaulted");
    assert_eq!(old["subjects"][0]["apiGroup"], g, "defaulted");
    let mut changed = old.clone();
    changed["roleRef"]["name"] = json!("other");
    assert_eq!(
        update_error(r, &old, changed).as_deref(),
        Some(
            r#"RoleBinding.rbac.authorization.k8s.io "b" is invalid: roleRef: Invalid value: {"APIGroup":"rbac.authorization.k8s.io","Kind":"Role","Name":"other"}: field is immutable"#
        )
    );
}

#[test]
fn rbac_objects_validate_like_upstream() {
    let g = "rbac.authorization.k8s.io";
    let fields = |plural: &str, obj: Value| -> Vec<String> {
        create_causes(res(g, plural), obj)
            .into_iter()
            .map(|(f, _)| f)
            .collect()
    };
    let ok_role = json!({"metadata": {"name": "system:x", "namespace": "n"}, "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]});
    assert!(fields("roles", ok_role).is_empty());
    let bad_role = json!({"metadata": {"name": "a/b", "namespace": "n"}, "rules": [{"verbs": [], "resources": ["pods"]}, {"verbs": ["get"], "nonResourceURLs": ["/x"]}]});
    assert_eq!(
        fields("roles", bad_role),
        [
            "metadata.name",
            "rules[0].verbs",
            "rules[0].apiGroups",
            "rules[1].nonResourceURLs"
        ]
    );
    let mixed = json!({"metadata": {"name": "c"}, "rules": [{"verbs": ["get"], "resources": ["pods"], "nonResourceURLs": ["/x"]}], "aggregationRule": {}});
    assert_eq!(
        fields("clusterroles", mixed),
        [
            "rules[0].nonResourceURLs",
            "aggregationRule.clusterRoleSelectors"
        ]
    );
    let crb = json!({"metadata": {"name": "b"}, "roleRef": {"apiGroup": g, "kind": "Role", "name": "r"}, "subjects": [{"kind": "ServiceAccount", "name": "s"}, {"kind": "User", "apiGroup": "x", "name": "u"}, {"kind": "Bot", "name": ""}]});
    assert_eq!(
        fields("clusterrolebindings", crb),
        [
            "roleRef.kind",
            "subjects[0].namespace",
            "subjects[1].apiGroup",
            "subjects[2].name",
            "subjects[2].kind"
        ]
    );
}

#[test]
fn every_served_kind_has_printer_columns_matching_its_cells() {
    for r in crate::api::resources::RESOURCES {
        let obj = json!({"metadata": {"name": "x", "creationTimestamp": "2026-01-01T00:00:00Z"}});
        assert_eq!(
            r.strategy.columns().len(),
            r.strategy.cells(&obj).len(),
            "{}",
            r.kind
        );
    }
}

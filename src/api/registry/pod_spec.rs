//! Pod specs, shared by pods and every pod template: upstream's defaults, create validation
//! for the fields Skiff runs, and `ValidatePodUpdate`'s list of what a pod may change.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, Toleration};

use super::validation::{is_dns1123_label, labels, port, shown, DNS1123_LABEL_RULE};
use crate::api::status::Cause;

/// Upstream's `SetDefaults_PodSpec` and `SetDefaults_Container` for the fields Skiff uses.
pub fn defaults(spec: &mut PodSpec) {
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.termination_grace_period_seconds.get_or_insert(30);
    spec.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    spec.security_context.get_or_insert_with(Default::default);
    spec.scheduler_name
        .get_or_insert_with(|| "default-scheduler".into());
    // Upstream's conversion: the deprecated `serviceAccount` mirrors `serviceAccountName`
    // (an old client may have set only `serviceAccount`). Pods get `default` on admission.
    let account = [&spec.service_account_name, &spec.service_account]
        .into_iter()
        .flatten()
        .find(|n| !n.is_empty())
        .cloned();
    if let Some(a) = account {
        spec.service_account_name = Some(a.clone());
        spec.service_account = Some(a);
    }
    for c in spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut())
    {
        container_defaults(c);
    }
}

fn container_defaults(c: &mut Container) {
    let image = c.image.as_deref().unwrap_or("");
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
    c.image_pull_policy.get_or_insert_with(|| pull.into());
    c.termination_message_path
        .get_or_insert_with(|| "/dev/termination-log".into());
    c.termination_message_policy
        .get_or_insert_with(|| "File".into());
    c.resources.get_or_insert_with(Default::default);
    for p in c.ports.iter_mut().flatten() {
        p.protocol.get_or_insert_with(|| "TCP".into());
    }
}

pub fn template_defaults(t: &mut PodTemplateSpec) {
    if let Some(spec) = t.spec.as_mut() {
        defaults(spec);
    }
}

/// A template: labels, and its pod spec (required). `claims` are further names containers
/// may mount (a StatefulSet's volume claim templates).
pub fn validate_template(t: &PodTemplateSpec, path: &str, claims: &[&str], errs: &mut Vec<Cause>) {
    if let Some(m) = &t.metadata {
        labels(m.labels.as_ref(), &format!("{path}.metadata.labels"), errs);
    }
    match &t.spec {
        None => errs.push(Cause::required(format!("{path}.spec"))),
        Some(spec) => validate(spec, &format!("{path}.spec"), claims, errs),
    }
}

pub fn validate(spec: &PodSpec, path: &str, claims: &[&str], errs: &mut Vec<Cause>) {
    if spec.containers.is_empty() {
        errs.push(Cause::required(format!("{path}.containers")));
    }
    let mut volumes: HashSet<&str> = claims.iter().copied().collect();
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        let at = format!("{path}.volumes[{i}].name");
        if v.name.is_empty() {
            errs.push(Cause::required(at));
        } else if !is_dns1123_label(&v.name) {
            errs.push(Cause::invalid(at, shown(&v.name), DNS1123_LABEL_RULE));
        } else if !volumes.insert(v.name.as_str()) {
            errs.push(Cause::duplicate(at, shown(&v.name)));
        }
    }
    let mut names = HashSet::new();
    let lists = [
        (
            "initContainers",
            spec.init_containers.as_deref().unwrap_or(&[]),
        ),
        ("containers", spec.containers.as_slice()),
    ];
    for (list, items) in lists {
        for (i, c) in items.iter().enumerate() {
            let at = format!("{path}.{list}[{i}]");
            container(c, &at, &mut names, &volumes, errs);
        }
    }
    if let Some(rp) = &spec.restart_policy {
        if !matches!(rp.as_str(), "Always" | "OnFailure" | "Never") {
            errs.push(Cause::not_supported(
                format!("{path}.restartPolicy"),
                shown(rp),
                &["Always", "OnFailure", "Never"],
            ));
        }
    }
    if let Some(d) = spec.active_deadline_seconds {
        if !(1..=i64::from(i32::MAX)).contains(&d) {
            errs.push(Cause::invalid(
                format!("{path}.activeDeadlineSeconds"),
                d,
                format!("must be between 1 and {}, inclusive", i32::MAX),
            ));
        }
    }
}

fn container<'a>(
    c: &'a Container,
    at: &str,
    names: &mut HashSet<&'a str>,
    volumes: &HashSet<&str>,
    errs: &mut Vec<Cause>,
) {
    if c.name.is_empty() {
        errs.push(Cause::required(format!("{at}.name")));
    } else if !is_dns1123_label(&c.name) {
        errs.push(Cause::invalid(
            format!("{at}.name"),
            shown(&c.name),
            DNS1123_LABEL_RULE,
        ));
    } else if !names.insert(c.name.as_str()) {
        errs.push(Cause::duplicate(format!("{at}.name"), shown(&c.name)));
    }
    if c.image.as_deref().unwrap_or("").is_empty() {
        errs.push(Cause::required(format!("{at}.image")));
    }
    for (j, p) in c.ports.iter().flatten().enumerate() {
        port(
            p.container_port,
            &format!("{at}.ports[{j}].containerPort"),
            errs,
        );
    }
    volume_mounts(c, at, volumes, errs);
}

/// Upstream's `ValidateVolumeMounts` for the fields Skiff runs. As upstream, the subPath
/// errors name `volumeMounts.subPath` without the index.
fn volume_mounts(c: &Container, at: &str, volumes: &HashSet<&str>, errs: &mut Vec<Cause>) {
    let mut mount_points = HashSet::new();
    for (j, m) in c.volume_mounts.iter().flatten().enumerate() {
        let idx = format!("{at}.volumeMounts[{j}]");
        if m.name.is_empty() {
            errs.push(Cause::required(format!("{idx}.name")));
        }
        if !volumes.contains(m.name.as_str()) {
            errs.push(Cause {
                reason: "FieldValueNotFound",
                field: format!("{idx}.name"),
                message: format!("Not found: {}", shown(&m.name)),
            });
        }
        if m.mount_path.is_empty() {
            errs.push(Cause::required(format!("{idx}.mountPath")));
        } else if m.mount_path.contains(':') {
            errs.push(Cause::invalid(
                format!("{idx}.mountPath"),
                shown(&m.mount_path),
                "must not contain ':'",
            ));
        }
        if !mount_points.insert(m.mount_path.as_str()) {
            errs.push(Cause::invalid(
                format!("{idx}.mountPath"),
                shown(&m.mount_path),
                "must be unique",
            ));
        }
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            local_descending_path(sub, &format!("{at}.volumeMounts.subPath"), errs);
        }
    }
}

/// Upstream's `validateLocalDescendingPath`: relative, and no `..` element.
pub fn local_descending_path(p: &str, field: &str, errs: &mut Vec<Cause>) {
    if p.starts_with('/') {
        errs.push(Cause::invalid(field, shown(p), "must be a relative path"));
    }
    if p.split('/').any(|part| part == "..") {
        errs.push(Cause::invalid(field, shown(p), "must not contain '..'"));
    }
}

/// What `ValidatePodUpdate` lets a pod change; the rest of the spec is fixed at creation.
const UPDATABLE: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

pub fn validate_update(new: &PodSpec, old: &PodSpec, errs: &mut Vec<Cause>) {
    if new.containers.len() != old.containers.len() {
        errs.push(Cause::forbidden(
            "spec.containers",
            "pod updates may not add or remove containers",
        ));
        return;
    }
    match (new.active_deadline_seconds, old.active_deadline_seconds) {
        (Some(n), _) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            errs.push(Cause::invalid(
                "spec.activeDeadlineSeconds",
                n,
                format!("must be between 0 and {}, inclusive", i32::MAX),
            ));
            return;
        }
        (Some(n), Some(o)) if o < n => {
            errs.push(Cause::invalid(
                "spec.activeDeadlineSeconds",
                n,
                "must be less than or equal to previous value",
            ));
            return;
        }
        (None, Some(_)) => errs.push(Cause::invalid(
            "spec.activeDeadlineSeconds",
            "null",
            "must not update from a positive integer to nil value",
        )),
        _ => {}
    }
    only_added_tolerations(
        new.tolerations.as_deref().unwrap_or(&[]),
        old.tolerations.as_deref().unwrap_or(&[]),
        errs,
    );
    // The spec with everything an update may change taken from the old one must be the old.
    let mut munged = new.clone();
    for (c, was) in munged.containers.iter_mut().zip(&old.containers) {
        c.image.clone_from(&was.image);
    }
    if let (Some(cs), Some(olds)) = (munged.init_containers.as_mut(), &old.init_containers) {
        if cs.len() == olds.len() {
            for (c, was) in cs.iter_mut().zip(olds) {
                c.image.clone_from(&was.image);
            }
        }
    }
    munged.active_deadline_seconds = old.active_deadline_seconds;
    munged.scheduling_gates.clone_from(&old.scheduling_gates);
    munged.tolerations.clone_from(&old.tolerations);
    if old.termination_grace_period_seconds.is_some_and(|g| g < 0)
        && munged.termination_grace_period_seconds == Some(1)
    {
        munged.termination_grace_period_seconds = old.termination_grace_period_seconds;
    }
    if munged != *old {
        errs.push(Cause::forbidden(
            "spec",
            format!("pod updates may not change fields other than {UPDATABLE}"),
        ));
    }
}

/// `validateOnlyAddedTolerations`: an existing toleration stays, but for its seconds.
fn only_added_tolerations(new: &[Toleration], old: &[Toleration], errs: &mut Vec<Cause>) {
    let kept = old.iter().all(|o| {
        new.iter().any(|n| {
            let mut o = o.clone();
            o.toleration_seconds = n.toleration_seconds;
            o == *n
        })
    });
    if !kept {
        errs.push(Cause::forbidden(
            "spec.tolerations",
            "existing toleration can not be modified except its tolerationSeconds",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_paths_must_stay_inside_their_volume() {
        let spec: PodSpec = serde_json::from_value(serde_json::json!({
            "containers": [{"name": "c", "image": "i", "volumeMounts": [
                {"name": "v", "mountPath": "/a", "subPath": "/"},
                {"name": "v", "mountPath": "/b", "subPath": "x/../../y"},
                {"name": "v", "mountPath": "/b", "subPath": "ok/sub"},
                {"name": "v", "mountPath": ""},
            ]}],
            "volumes": [{"name": "v", "emptyDir": {}}],
        }))
        .expect("spec");
        let mut errs = Vec::new();
        validate(&spec, "spec", &[], &mut errs);
        let got: Vec<(&str, &str, &str)> = errs
            .iter()
            .map(|c| (c.reason, c.field.as_str(), c.message.as_str()))
            .collect();
        let field = "spec.containers[0].volumeMounts.subPath";
        assert_eq!(
            got,
            vec![
                (
                    "FieldValueInvalid",
                    field,
                    "Invalid value: \"/\": must be a relative path"
                ),
                (
                    "FieldValueInvalid",
                    field,
                    "Invalid value: \"x/../../y\": must not contain '..'"
                ),
                (
                    "FieldValueInvalid",
                    "spec.containers[0].volumeMounts[2].mountPath",
                    "Invalid value: \"/b\": must be unique"
                ),
                (
                    "FieldValueRequired",
                    "spec.containers[0].volumeMounts[3].mountPath",
                    "Required value"
                ),
            ]
        );
    }
}

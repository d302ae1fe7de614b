//! Rendered template output as manifests: split on `---`, parsed, checked for the fields
//! an apply needs, and ordered the way Helm installs them.

use serde_json::Value;

use super::ChartError;

/// Helm's InstallOrder (pkg/release/util/kind_sorter.go); kinds not listed go last.
/// Uninstall runs in the reverse order.
const INSTALL_ORDER: &[&str] = &[
    "PriorityClass",
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

/// One object from a chart.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The template it came from, `CHART/templates/FILE`.
    pub source: String,
    /// The document as rendered (what `chart template` prints).
    pub text: String,
    /// The document parsed.
    pub object: Value,
}

impl Manifest {
    pub fn api_version(&self) -> &str {
        self.object["apiVersion"].as_str().unwrap_or_default()
    }

    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }
}

/// Position of a kind in the install order.
pub fn install_rank(kind: &str) -> usize {
    INSTALL_ORDER
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(INSTALL_ORDER.len())
}

/// Stable: objects of one kind keep their file order.
pub fn sort_for_install(manifests: &mut [Manifest]) {
    manifests.sort_by_key(|m| install_rank(m.kind()));
}

/// The manifests as one multi-document YAML stream, each headed by its template, the way
/// `helm template` prints them.
pub fn manifest_text(manifests: &[Manifest]) -> String {
    manifests
        .iter()
        .map(|m| format!("---\n# Source: {}\n{}\n", m.source, m.text))
        .collect()
}

/// The documents of one rendered file; blank and comment-only documents are dropped.
pub fn split(source: &str, rendered: &str) -> Result<Vec<Manifest>, ChartError> {
    let mut docs = vec![String::new()];
    for line in rendered.lines() {
        if let Some(rest) = line.strip_prefix("---") {
            if rest.is_empty() || rest.starts_with([' ', '\t']) {
                // `--- # comment` or `--- key: value` (content on the marker line).
                let rest = rest.trim();
                let mut doc = String::new();
                if !rest.is_empty() && !rest.starts_with('#') {
                    doc.push_str(rest);
                    doc.push('\n');
                }
                docs.push(doc);
                continue;
            }
        }
        if let Some(doc) = docs.last_mut() {
            doc.push_str(line);
            doc.push('\n');
        }
    }
    let mut out = Vec::new();
    for doc in docs {
        let text = doc.trim().to_string();
        if text.is_empty() {
            continue;
        }
        let err = |msg: String| ChartError::Manifest {
            file: source.to_string(),
            msg,
        };
        let object: Value = yaml_serde::from_str(&text).map_err(|e| {
            err(format!(
                "YAML parse error: {}",
                e.to_string().replace('\n', " ")
            ))
        })?;
        if object.is_null() {
            continue;
        }
        if !object.is_object() {
            return Err(err("a document is not a YAML mapping".into()));
        }
        let m = Manifest {
            source: source.to_string(),
            text,
            object,
        };
        if m.api_version().is_empty() {
            return Err(err("an object has no apiVersion".into()));
        }
        if m.kind().is_empty() {
            return Err(err("an object has no kind".into()));
        }
        if m.name().is_empty() {
            return Err(err(format!("a {} has no metadata.name", m.kind())));
        }
        out.push(m);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_orders() {
        let text = "# a comment only\n---\nkind: Deployment\napiVersion: apps/v1\nmetadata: {name: d}\n--- # next\nkind: Service\napiVersion: v1\nmetadata:\n  name: s\n---\n\n";
        let mut ms = split("c/templates/x.yaml", text).unwrap();
        assert_eq!(ms.len(), 2);
        sort_for_install(&mut ms);
        assert_eq!(ms[0].kind(), "Service");
        assert_eq!(ms[1].name(), "d");
        assert!(ms[1].text.starts_with("kind: Deployment"));
    }

    #[test]
    fn rejects_objects_that_cannot_be_applied() {
        assert!(split("f", "kind: Service\nmetadata: {name: s}\n").is_err());
        assert!(split("f", "apiVersion: v1\nkind: Service\n").is_err());
        assert!(split("f", "- a\n").is_err());
        let e = split("f", "a: [\n").unwrap_err().to_string();
        assert!(
            e.starts_with("f: YAML parse error") && !e.contains('\n'),
            "{e}"
        );
    }
}

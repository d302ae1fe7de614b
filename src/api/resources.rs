//! The kinds the API serves: group, version, names, scope and subresources, as discovery
//! shows them and as requests are routed.

/// A subresource of a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sub {
    Status,
    Scale,
    Binding,
    Log,
    Exec,
    /// `serviceaccounts/token`: TokenRequest (`api::serviceaccounts`).
    Token,
}

impl Sub {
    pub fn name(self) -> &'static str {
        match self {
            Sub::Status => "status",
            Sub::Scale => "scale",
            Sub::Binding => "binding",
            Sub::Log => "log",
            Sub::Exec => "exec",
            Sub::Token => "token",
        }
    }
}

#[derive(Debug)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [Sub],
    /// `metadata.generation` is kept and bumped on spec changes.
    pub has_generation: bool,
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Store key prefix of the whole collection, ending in `/`.
    pub fn prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/registry/{}/", self.plural)
        } else {
            format!("/registry/{}/{}/", self.group, self.plural)
        }
    }

    /// Store key prefix for one namespace (or the collection when cluster-scoped / all).
    pub fn scope_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/", self.prefix()),
            _ => self.prefix(),
        }
    }

    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.scope_prefix(namespace))
    }

    pub fn has(&self, sub: Sub) -> bool {
        self.subresources.contains(&sub)
    }
}

const ALL: &[&str] = &["all"];
const ST: &[Sub] = &[Sub::Status];
const ST_SCALE: &[Sub] = &[Sub::Status, Sub::Scale];
const NONE: &[Sub] = &[];

macro_rules! res {
    ($g:expr, $p:expr, $s:expr, $k:expr, $ns:expr, $short:expr, $cat:expr, $sub:expr, $gen:expr) => {
        Resource {
            group: $g,
            version: "v1",
            plural: $p,
            singular: $s,
            kind: $k,
            namespaced: $ns,
            short_names: $short,
            categories: $cat,
            subresources: $sub,
            has_generation: $gen,
        }
    };
}

pub static RESOURCES: &[Resource] = &[
    res!(
        "",
        "namespaces",
        "namespace",
        "Namespace",
        false,
        &["ns"],
        NONE_CAT,
        ST,
        false
    ),
    res!(
        "",
        "nodes",
        "node",
        "Node",
        false,
        &["no"],
        NONE_CAT,
        ST,
        false
    ),
    res!(
        "",
        "pods",
        "pod",
        "Pod",
        true,
        &["po"],
        ALL,
        &[Sub::Status, Sub::Binding, Sub::Log, Sub::Exec],
        true
    ),
    res!(
        "",
        "services",
        "service",
        "Service",
        true,
        &["svc"],
        ALL,
        ST,
        false
    ),
    res!(
        "",
        "endpoints",
        "endpoints",
        "Endpoints",
        true,
        &["ep"],
        NONE_CAT,
        NONE,
        false
    ),
    res!(
        "",
        "configmaps",
        "configmap",
        "ConfigMap",
        true,
        &["cm"],
        NONE_CAT,
        NONE,
        false
    ),
    res!("", "secrets", "secret", "Secret", true, NONE_CAT, NONE_CAT, NONE, false),
    res!(
        "",
        "events",
        "event",
        "Event",
        true,
        &["ev"],
        NONE_CAT,
        NONE,
        false
    ),
    res!(
        "",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        true,
        &["sa"],
        NONE_CAT,
        &[Sub::Token],
        false
    ),
    res!(
        "",
        "persistentvolumes",
        "persistentvolume",
        "PersistentVolume",
        false,
        &["pv"],
        NONE_CAT,
        ST,
        false
    ),
    res!(
        "",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        "PersistentVolumeClaim",
        true,
        &["pvc"],
        NONE_CAT,
        ST,
        false
    ),
    res!(
        "apps",
        "deployments",
        "deployment",
        "Deployment",
        true,
        &["deploy"],
        ALL,
        ST_SCALE,
        true
    ),
    res!(
        "apps",
        "replicasets",
        "replicaset",
        "ReplicaSet",
        true,
        &["rs"],
        ALL,
        ST_SCALE,
        true
    ),
    res!(
        "apps",
        "daemonsets",
        "daemonset",
        "DaemonSet",
        true,
        &["ds"],
        ALL,
        ST,
        true
    ),
    res!(
        "apps",
        "statefulsets",
        "statefulset",
        "StatefulSet",
        true,
        &["sts"],
        ALL,
        ST_SCALE,
        true
    ),
    res!(
        "apps",
        "controllerrevisions",
        "controllerrevision",
        "ControllerRevision",
        true,
        NONE_CAT,
        NONE_CAT,
        NONE,
        false
    ),
    res!("batch", "jobs", "job", "Job", true, NONE_CAT, ALL, ST, true),
    res!(
        "batch",
        "cronjobs",
        "cronjob",
        "CronJob",
        true,
        &["cj"],
        ALL,
        ST,
        true
    ),
    res!(
        "storage.k8s.io",
        "storageclasses",
        "storageclass",
        "StorageClass",
        false,
        &["sc"],
        NONE_CAT,
        NONE,
        false
    ),
    res!(
        "coordination.k8s.io",
        "leases",
        "lease",
        "Lease",
        true,
        NONE_CAT,
        NONE_CAT,
        NONE,
        false
    ),
    res!(
        "networking.k8s.io",
        "ingresses",
        "ingress",
        "Ingress",
        true,
        &["ing"],
        NONE_CAT,
        ST,
        true
    ),
    res!(
        "networking.k8s.io",
        "ingressclasses",
        "ingressclass",
        "IngressClass",
        false,
        NONE_CAT,
        NONE_CAT,
        NONE,
        true
    ),
    res!(
        "discovery.k8s.io",
        "endpointslices",
        "endpointslice",
        "EndpointSlice",
        true,
        NONE_CAT,
        NONE_CAT,
        NONE,
        false
    ),
    res!(
        "rbac.authorization.k8s.io",
        "roles",
        "role",
        "Role",
        true,
        NONE_CAT,
        NONE_CAT,
        NONE,
        false
    ),
    res!(
        "rbac.authorization.k8s.io",
        "rolebindings",
        "rolebinding",
        "RoleBinding",
        true,
        NONE_CAT,
        NONE_CAT,
        NONE,
        false
    ),
    res!(
        "rbac.authorization.k8s.io",
        "clusterroles",
        "clusterrole",
        "ClusterRole",
        false,
        NONE_CAT,
        NONE_CAT,
        NONE,
        false
    ),
    res!(
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        false,
        NONE_CAT,
        NONE_CAT,
        NONE,
        false
    ),
    // Reviews: answered, never stored (`auth::review`); create only.
    res!(
        "authorization.k8s.io",
        "selfsubjectaccessreviews",
        "selfsubjectaccessreview",
        "SelfSubjectAccessReview",
        false,
        NONE_CAT,
        NONE_CAT,
        NONE,
        false
    ),
    res!(
        "authorization.k8s.io",
        "selfsubjectrulesreviews",
        "selfsubjectrulesreview",
        "SelfSubjectRulesReview",
        false,
        NONE_CAT,
        NONE_CAT,
        NONE,
        false
    ),
    res!(
        "authorization.k8s.io",
        "subjectaccessreviews",
        "subjectaccessreview",
        "SubjectAccessReview",
        false,
        NONE_CAT,
        NONE_CAT,
        NONE,
        false
    ),
    res!(
        "authorization.k8s.io",
        "localsubjectaccessreviews",
        "localsubjectaccessreview",
        "LocalSubjectAccessReview",
        true,
        NONE_CAT,
        NONE_CAT,
        NONE,
        false
    ),
    res!(
        "authentication.k8s.io",
        "tokenreviews",
        "tokenreview",
        "TokenReview",
        false,
        NONE_CAT,
        NONE_CAT,
        NONE,
        false
    ),
    res!(
        "authentication.k8s.io",
        "selfsubjectreviews",
        "selfsubjectreview",
        "SelfSubjectReview",
        false,
        NONE_CAT,
        NONE_CAT,
        NONE,
        false
    ),
    // kubectl 1.27 `auth whoami` knows only the beta (still served upstream).
    Resource {
        version: "v1beta1",
        ..res!(
            "authentication.k8s.io",
            "selfsubjectreviews",
            "selfsubjectreview",
            "SelfSubjectReview",
            false,
            NONE_CAT,
            NONE_CAT,
            NONE,
            false
        )
    },
];

const NONE_CAT: &[&str] = &[];

/// API groups in the order discovery lists them (core first).
pub fn groups() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&r.group) {
            out.push(r.group);
        }
    }
    out
}

pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

pub fn group_served(group: &str, version: &str) -> bool {
    RESOURCES
        .iter()
        .any(|r| r.group == group && r.version == version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_kubernetes_layout() {
        let pods = find("", "v1", "pods").expect("pods");
        assert_eq!(
            pods.key(Some("default"), "web"),
            "/registry/pods/default/web"
        );
        let deploy = find("apps", "v1", "deployments").expect("deployments");
        assert_eq!(deploy.scope_prefix(None), "/registry/apps/deployments/");
        let nodes = find("", "v1", "nodes").expect("nodes");
        assert_eq!(nodes.key(Some("ignored"), "n1"), "/registry/nodes/n1");
    }

    #[test]
    fn no_prefix_is_a_prefix_of_another() {
        for a in RESOURCES {
            for b in RESOURCES {
                if a.plural != b.plural || a.group != b.group {
                    assert!(
                        !b.prefix().starts_with(&a.prefix()),
                        "{} / {}",
                        a.prefix(),
                        b.prefix()
                    );
                }
            }
        }
    }
}

//! The kinds the API serves: group, version, names, scope and subresources, as discovery
//! shows them and as requests are routed.

use super::registry::Rest;
use super::registry::{
    apps, auth, batch, coordination, core, discovery, networking, rbac, storage,
};

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
    /// `namespaces/finalize`: the namespace's `spec.finalizers`.
    Finalize,
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
            Sub::Finalize => "finalize",
        }
    }
}

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
    /// Everything about the kind beyond its names: defaults, validation, printing.
    pub strategy: &'static dyn Rest,
}

impl std::fmt::Debug for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} {}", self.group, self.version, self.plural)
    }
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

/// Every served kind, in the order discovery lists them (core first). Each is defined with
/// its strategy in `registry`.
pub static RESOURCES: &[&Resource] = &[
    &core::namespace::RESOURCE,
    &core::node::RESOURCE,
    &core::pod::RESOURCE,
    &core::service::RESOURCE,
    &core::endpoints::RESOURCE,
    &core::configmap::RESOURCE,
    &core::secret::RESOURCE,
    &core::event::RESOURCE,
    &core::serviceaccount::RESOURCE,
    &core::persistentvolume::RESOURCE,
    &core::persistentvolumeclaim::RESOURCE,
    &core::podtemplate::RESOURCE,
    &core::replicationcontroller::RESOURCE,
    &apps::deployment::RESOURCE,
    &apps::replicaset::RESOURCE,
    &apps::daemonset::RESOURCE,
    &apps::statefulset::RESOURCE,
    &apps::controllerrevision::RESOURCE,
    &batch::job::RESOURCE,
    &batch::cronjob::RESOURCE,
    &storage::storageclass::RESOURCE,
    &storage::csi::CSI_DRIVERS,
    &storage::csi::CSI_NODES,
    &storage::csi::CSI_STORAGE_CAPACITIES,
    &storage::csi::VOLUME_ATTACHMENTS,
    &coordination::lease::RESOURCE,
    &networking::ingress::RESOURCE,
    &networking::ingressclass::RESOURCE,
    &discovery::endpointslice::RESOURCE,
    &rbac::role::RESOURCE,
    &rbac::rolebinding::RESOURCE,
    &rbac::clusterrole::RESOURCE,
    &rbac::clusterrolebinding::RESOURCE,
    // Reviews: answered, never stored (`auth::review`); create only.
    &auth::SELF_SUBJECT_ACCESS_REVIEWS,
    &auth::SELF_SUBJECT_RULES_REVIEWS,
    &auth::SUBJECT_ACCESS_REVIEWS,
    &auth::LOCAL_SUBJECT_ACCESS_REVIEWS,
    &auth::TOKEN_REVIEWS,
    &auth::SELF_SUBJECT_REVIEWS,
    // kubectl 1.27 `auth whoami` knows only the beta (still served upstream).
    &auth::SELF_SUBJECT_REVIEWS_V1BETA1,
];

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
        .copied()
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

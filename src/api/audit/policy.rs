//! Audit policy in upstream's `audit.k8s.io/v1` Policy format (`api.audit_policy_file`): the
//! first rule that matches a request gives its level (None, Metadata, Request,
//! RequestResponse); no match is None. Without a file every request is logged at Metadata
//! except health checks, version and metrics.

use std::path::Path;

use serde::Deserialize;
use thiserror::Error;

use crate::api::auth::UserInfo;
use crate::api::request::info::RequestInfo;

#[derive(Debug, Error)]
pub enum PolicyError {
    #[error("audit policy {0}: {1}")]
    Read(String, std::io::Error),
    #[error("audit policy {0}: {1}")]
    Invalid(String, String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum Level {
    None,
    Metadata,
    Request,
    RequestResponse,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::None => "None",
            Level::Metadata => "Metadata",
            Level::Request => "Request",
            Level::RequestResponse => "RequestResponse",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GroupResources {
    #[serde(default)]
    group: String,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    resource_names: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Rule {
    level: Level,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    user_groups: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
    #[serde(default)]
    resources: Vec<GroupResources>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs")]
    non_resource_urls: Vec<String>,
    #[serde(default)]
    omit_stages: Vec<String>,
    /// Accepted as upstream's; events carry no objects with managed fields to omit.
    #[serde(default, rename = "omitManagedFields")]
    _omit_managed_fields: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PolicyFile {
    api_version: String,
    kind: String,
    #[serde(default, rename = "metadata")]
    _metadata: Option<serde_json::Value>,
    rules: Vec<Rule>,
    #[serde(default)]
    omit_stages: Vec<String>,
    #[serde(default, rename = "omitManagedFields")]
    _omit_managed_fields: bool,
}

#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<Rule>,
    omit_stages: Vec<String>,
}

/// `*` matches anything; `prefix*` a prefix (upstream's nonResourceURLs rule).
fn url_matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => pattern == path,
    }
}

fn resource_matches(pattern: &str, info: &RequestInfo) -> bool {
    let full = if info.subresource.is_empty() {
        info.resource.clone()
    } else {
        format!("{}/{}", info.resource, info.subresource)
    };
    match pattern.split_once('/') {
        _ if pattern == "*" || pattern == full => true,
        Some(("*", sub)) => sub == info.subresource,
        Some((res, "*")) => res == info.resource,
        _ => false,
    }
}

impl Rule {
    fn matches(&self, user: &UserInfo, info: &RequestInfo, path: &str) -> bool {
        if !self.users.is_empty() && !self.users.contains(&user.username) {
            return false;
        }
        if !self.user_groups.is_empty() && !self.user_groups.iter().any(|g| user.in_group(g)) {
            return false;
        }
        if !self.verbs.is_empty() && !self.verbs.contains(&info.verb) {
            return false;
        }
        if !info.resource_request {
            // A rule about resources or namespaces says nothing of other paths.
            if !self.resources.is_empty() || !self.namespaces.is_empty() {
                return false;
            }
            return self.non_resource_urls.is_empty()
                || self.non_resource_urls.iter().any(|p| url_matches(p, path));
        }
        if !self.non_resource_urls.is_empty() {
            return false;
        }
        if !self.namespaces.is_empty() && !self.namespaces.contains(&info.namespace) {
            return false;
        }
        self.resources.is_empty()
            || self.resources.iter().any(|gr| {
                gr.group == info.group
                    && (gr.resources.is_empty()
                        || gr.resources.iter().any(|r| resource_matches(r, info)))
                    && (gr.resource_names.is_empty() || gr.resource_names.contains(&info.name))
            })
    }
}

impl Policy {
    /// Metadata for every request but health checks, version and metrics.
    pub fn default_policy() -> Policy {
        let quiet = Rule {
            level: Level::None,
            users: Vec::new(),
            user_groups: Vec::new(),
            verbs: Vec::new(),
            resources: Vec::new(),
            namespaces: Vec::new(),
            non_resource_urls: ["/healthz*", "/livez*", "/readyz*", "/version", "/metrics"]
                .map(String::from)
                .to_vec(),
            omit_stages: Vec::new(),
            _omit_managed_fields: None,
        };
        let everything = Rule {
            level: Level::Metadata,
            non_resource_urls: Vec::new(),
            ..quiet.clone()
        };
        Policy {
            rules: vec![quiet, everything],
            omit_stages: Vec::new(),
        }
    }

    /// The policy in `path`; empty: the default.
    pub fn load(path: &str) -> Result<Policy, PolicyError> {
        if path.is_empty() {
            return Ok(Policy::default_policy());
        }
        let text = std::fs::read_to_string(Path::new(path))
            .map_err(|e| PolicyError::Read(path.into(), e))?;
        Policy::parse(&text).map_err(|e| PolicyError::Invalid(path.into(), e))
    }

    fn parse(text: &str) -> Result<Policy, String> {
        let f: PolicyFile = yaml_serde::from_str(text).map_err(|e| e.to_string())?;
        if f.kind != "Policy" || !f.api_version.starts_with("audit.k8s.io/") {
            return Err(format!(
                "expected an audit.k8s.io/v1 Policy, got {} {}",
                f.api_version, f.kind
            ));
        }
        if f.rules.is_empty() {
            return Err("a policy needs at least one rule".into());
        }
        Ok(Policy {
            rules: f.rules,
            omit_stages: f.omit_stages,
        })
    }

    /// The level of a request and the stages its rule leaves out.
    pub fn level(&self, user: &UserInfo, info: &RequestInfo, path: &str) -> (Level, Vec<String>) {
        match self.rules.iter().find(|r| r.matches(user, info, path)) {
            Some(r) => {
                let mut omit = self.omit_stages.clone();
                omit.extend(r.omit_stages.iter().cloned());
                (r.level, omit)
            }
            None => (Level::None, Vec::new()),
        }
    }

    /// Whether some rule logs bodies (then request bodies are kept until the level is known).
    pub fn logs_bodies(&self) -> bool {
        self.rules.iter().any(|r| r.level >= Level::Request)
    }
}

impl crate::fuzz_targets::Decoders {
    /// Parses an audit policy file and asks it for a level, as the audit middleware does.
    pub fn audit_policy(text: &str) -> Result<(), String> {
        let policy = Policy::parse(text)?;
        let info = RequestInfo::parse("GET", "/api/v1/namespaces/d/pods/p/log", "");
        let _ = policy.level(
            &UserInfo::anonymous(),
            &info,
            "/api/v1/namespaces/d/pods/p/log",
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(method: &str, uri: &str) -> (RequestInfo, String) {
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        (RequestInfo::parse(method, path, query), path.to_string())
    }

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            username: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_default_logs_every_request_but_health_checks() {
        let p = Policy::default_policy();
        let admin = user("admin", &["system:masters"]);
        for uri in [
            "/api/v1/namespaces/d/configmaps",
            "/api/v1/namespaces/d/secrets/s",
            "/api/v1/namespaces/d/pods/p/exec?command=sh",
            "/skiff/v1/join",
        ] {
            let (i, path) = info("GET", uri);
            assert_eq!(p.level(&admin, &i, &path).0, Level::Metadata, "{uri}");
        }
        for uri in [
            "/healthz",
            "/readyz?verbose",
            "/livez/ping",
            "/metrics",
            "/version",
        ] {
            let (i, path) = info("GET", uri);
            assert_eq!(p.level(&admin, &i, &path).0, Level::None, "{uri}");
        }
        assert!(!p.logs_bodies());
    }

    #[test]
    fn rules_match_as_upstreams() {
        let p = Policy::parse(
            r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  users: ["system:kube-proxy"]
- level: Metadata
  resources: [{group: "", resources: ["secrets", "configmaps"]}]
- level: RequestResponse
  resources: [{group: "", resources: ["pods/exec", "*/scale"]}]
- level: Request
  verbs: [create, update, patch]
  namespaces: [prod]
- level: None
  nonResourceURLs: ["/healthz*"]
"#,
        )
        .expect("policy");
        let dev = user("dev", &["devs"]);
        let check = |method: &str, uri: &str, who: &UserInfo| {
            let (i, path) = info(method, uri);
            p.level(who, &i, &path).0
        };
        assert_eq!(
            check("GET", "/api/v1/namespaces/prod/secrets/x", &dev),
            Level::Metadata
        );
        assert_eq!(
            check("POST", "/api/v1/namespaces/d/pods/p/exec", &dev),
            Level::RequestResponse
        );
        assert_eq!(
            check(
                "PUT",
                "/api/v1/namespaces/d/replicationcontrollers/r/scale",
                &dev
            ),
            Level::RequestResponse
        );
        // A rule's group must match: apps' scale is not the core group's.
        assert_eq!(
            check(
                "PUT",
                "/apis/apps/v1/namespaces/prod/deployments/w/scale",
                &dev
            ),
            Level::Request
        );
        assert_eq!(
            check("POST", "/api/v1/namespaces/prod/pods", &dev),
            Level::Request
        );
        assert_eq!(
            check("POST", "/api/v1/namespaces/dev/pods", &dev),
            Level::None
        );
        assert_eq!(
            check(
                "GET",
                "/api/v1/namespaces/prod/secrets/x",
                &user("system:kube-proxy", &[])
            ),
            Level::None
        );
        assert_eq!(check("GET", "/healthz", &dev), Level::None);
        assert!(p.logs_bodies());
        assert_eq!(
            p.level(
                &dev,
                &info("GET", "/api/v1/namespaces/prod/secrets/x").0,
                ""
            )
            .1,
            ["RequestReceived"]
        );
        assert!(Policy::parse("apiVersion: v1\nkind: ConfigMap\nrules: []\n").is_err());
        assert!(Policy::parse(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: Loud}]\n"
        )
        .is_err());
    }
}

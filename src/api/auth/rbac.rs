//! RBAC (rbac.authorization.k8s.io/v1) evaluation, as upstream's RBAC authorizer
//! (`plugin/pkg/auth/authorizer/rbac`) and rule helpers (`pkg/apis/rbac/v1/evaluation_helpers.go`):
//! a request is allowed when a ClusterRoleBinding, or a RoleBinding in the request's namespace,
//! binds a subject matching the user to a role with a rule covering the request. ClusterRole
//! `aggregationRule`s are resolved when the snapshot is built, as the aggregation controller
//! would have written them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde_json::{json, Value};

use super::{Attributes, Decision, UserInfo, SERVICE_ACCOUNT_PREFIX};

/// The API group of the RBAC kinds (also the `apiGroup` of User and Group subjects).
pub const GROUP: &str = "rbac.authorization.k8s.io";

pub const VERB_ALL: &str = "*";
pub const API_GROUP_ALL: &str = "*";
pub const RESOURCE_ALL: &str = "*";
pub const NON_RESOURCE_ALL: &str = "*";

/// One `PolicyRule`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyRule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

/// The strings of the array at `key` (others skipped; none when it is not an array).
pub fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn text(v: &Value, ptr: &str) -> String {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

impl PolicyRule {
    pub fn from_json(v: &Value) -> Self {
        PolicyRule {
            verbs: strings(v, "verbs"),
            api_groups: strings(v, "apiGroups"),
            resources: strings(v, "resources"),
            resource_names: strings(v, "resourceNames"),
            non_resource_urls: strings(v, "nonResourceURLs"),
        }
    }

    /// The JSON form; empty lists are left out, as upstream's `omitempty` does.
    pub fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        for (k, v) in [
            ("verbs", &self.verbs),
            ("apiGroups", &self.api_groups),
            ("resources", &self.resources),
            ("resourceNames", &self.resource_names),
            ("nonResourceURLs", &self.non_resource_urls),
        ] {
            if !v.is_empty() || k == "verbs" {
                m.insert(k.into(), json!(v));
            }
        }
        Value::Object(m)
    }

    /// Upstream's `VerbMatches`.
    pub fn verb_matches(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == VERB_ALL || v == verb)
    }

    /// Upstream's `APIGroupMatches`.
    pub fn api_group_matches(&self, group: &str) -> bool {
        self.api_groups
            .iter()
            .any(|g| g == API_GROUP_ALL || g == group)
    }

    /// Upstream's `ResourceMatches`: `*`, the exact `resource` or `resource/subresource`, or
    /// `*/subresource`.
    pub fn resource_matches(&self, combined: &str, subresource: &str) -> bool {
        self.resources.iter().any(|r| {
            r == RESOURCE_ALL
                || r == combined
                || (!subresource.is_empty()
                    && r.len() == subresource.len() + 2
                    && r.starts_with("*/")
                    && r.ends_with(subresource))
        })
    }

    /// Upstream's `ResourceNameMatches`: no names means all; otherwise the request must name
    /// one of them (a request without a name, such as list or create, never matches).
    pub fn resource_name_matches(&self, name: &str) -> bool {
        self.resource_names.is_empty() || self.resource_names.iter().any(|n| n == name)
    }

    /// Upstream's `NonResourceURLMatches`: `*`, exact, or a prefix ending in `*`.
    pub fn non_resource_url_matches(&self, path: &str) -> bool {
        self.non_resource_urls.iter().any(|u| {
            u == NON_RESOURCE_ALL
                || u == path
                || (u.ends_with('*') && path.starts_with(u.trim_end_matches('*')))
        })
    }

    /// Upstream's `RuleAllows`.
    pub fn allows(&self, attrs: &Attributes) -> bool {
        if attrs.resource_request {
            let combined = if attrs.subresource.is_empty() {
                attrs.resource.clone()
            } else {
                format!("{}/{}", attrs.resource, attrs.subresource)
            };
            self.verb_matches(&attrs.verb)
                && self.api_group_matches(&attrs.api_group)
                && self.resource_matches(&combined, &attrs.subresource)
                && self.resource_name_matches(&attrs.name)
        } else {
            self.verb_matches(&attrs.verb) && self.non_resource_url_matches(&attrs.path)
        }
    }
}

/// One `Subject` of a binding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    pub kind: String,
    pub api_group: String,
    pub name: String,
    pub namespace: String,
}

impl Subject {
    fn from_json(v: &Value) -> Self {
        Subject {
            kind: text(v, "/kind"),
            api_group: text(v, "/apiGroup"),
            name: text(v, "/name"),
            namespace: text(v, "/namespace"),
        }
    }

    /// Upstream's `appliesToUser`; `binding_namespace` is empty for ClusterRoleBindings.
    pub fn applies_to(&self, user: &UserInfo, binding_namespace: &str) -> bool {
        match self.kind.as_str() {
            "User" => user.username == self.name,
            "Group" => user.in_group(&self.name),
            "ServiceAccount" => {
                let ns = if self.namespace.is_empty() {
                    binding_namespace
                } else {
                    &self.namespace
                };
                !ns.is_empty()
                    && user.username == format!("{SERVICE_ACCOUNT_PREFIX}{ns}:{}", self.name)
            }
            _ => false,
        }
    }

    /// Upstream's `describeSubject`.
    fn describe(&self, binding_namespace: &str) -> String {
        match self.kind.as_str() {
            "ServiceAccount" => {
                let ns = if self.namespace.is_empty() {
                    binding_namespace
                } else {
                    &self.namespace
                };
                format!("{} \"{}/{ns}\"", self.kind, self.name)
            }
            _ => format!("{} \"{}\"", self.kind, self.name),
        }
    }
}

/// A binding's `roleRef`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoleRef {
    pub api_group: String,
    pub kind: String,
    pub name: String,
}

impl RoleRef {
    pub fn from_json(v: Option<&Value>) -> Self {
        let v = v.unwrap_or(&Value::Null);
        RoleRef {
            api_group: text(v, "/apiGroup"),
            kind: text(v, "/kind"),
            name: text(v, "/name"),
        }
    }
}

/// A RoleBinding (with its namespace) or a ClusterRoleBinding (namespace empty).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Binding {
    pub name: String,
    pub namespace: String,
    pub role_ref: RoleRef,
    pub subjects: Vec<Subject>,
}

impl Binding {
    pub fn from_json(obj: &Value) -> Self {
        Binding {
            name: text(obj, "/metadata/name"),
            namespace: text(obj, "/metadata/namespace"),
            role_ref: RoleRef::from_json(obj.get("roleRef")),
            subjects: obj
                .get("subjects")
                .and_then(Value::as_array)
                .map(|s| s.iter().map(Subject::from_json).collect())
                .unwrap_or_default(),
        }
    }

    fn cluster(&self) -> bool {
        self.namespace.is_empty()
    }

    /// The first subject that is the user (upstream's `appliesTo`).
    fn subject_for(&self, user: &UserInfo) -> Option<&Subject> {
        self.subjects
            .iter()
            .find(|s| s.applies_to(user, &self.namespace))
    }

    /// Upstream's `clusterRoleBindingDescriber` / `roleBindingDescriber`.
    fn describe(&self, subject: &Subject) -> String {
        if self.cluster() {
            format!(
                "ClusterRoleBinding \"{}\" of {} \"{}\" to {}",
                self.name,
                self.role_ref.kind,
                self.role_ref.name,
                subject.describe("")
            )
        } else {
            format!(
                "RoleBinding \"{}/{}\" of {} \"{}\" to {}",
                self.name,
                self.namespace,
                self.role_ref.kind,
                self.role_ref.name,
                subject.describe(&self.namespace)
            )
        }
    }
}

/// A `metav1.LabelSelector` of an aggregation rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Selector {
    match_labels: BTreeMap<String, String>,
    /// (key, operator, values)
    expressions: Vec<(String, String, Vec<String>)>,
}

impl Selector {
    fn from_json(v: &Value) -> Self {
        let match_labels = v
            .get("matchLabels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let expressions = v
            .get("matchExpressions")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|e| (text(e, "/key"), text(e, "/operator"), strings(e, "values")))
                    .collect()
            })
            .unwrap_or_default();
        Selector {
            match_labels,
            expressions,
        }
    }

    /// As `metav1.LabelSelectorAsSelector`: an empty selector matches everything; an
    /// unknown operator matches nothing.
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.expressions.iter().all(|(k, op, values)| {
                let have = labels.get(k);
                match op.as_str() {
                    "In" => have.is_some_and(|h| values.contains(h)),
                    "NotIn" => have.is_none_or(|h| !values.contains(h)),
                    "Exists" => have.is_some(),
                    "DoesNotExist" => have.is_none(),
                    _ => false,
                }
            })
    }
}

/// A ClusterRole as stored.
#[derive(Clone, Debug, Default)]
struct StoredClusterRole {
    labels: BTreeMap<String, String>,
    rules: Vec<PolicyRule>,
    aggregation: Option<Vec<Selector>>,
}

/// What `visit_rules_for` hands its visitor: a rule with the binding and subject that grant
/// it, or a role lookup that failed.
enum Visited<'a> {
    Rule(&'a Binding, &'a Subject, &'a PolicyRule),
    Error(String),
}

/// Everything RBAC decides from, read-only; built from the stored objects.
#[derive(Debug, Default)]
pub struct RbacSnapshot {
    /// ClusterRole name -> effective rules (aggregation resolved).
    cluster_roles: HashMap<String, Arc<Vec<PolicyRule>>>,
    /// (namespace, name) -> rules.
    roles: HashMap<(String, String), Arc<Vec<PolicyRule>>>,
    /// Sorted by name.
    cluster_role_bindings: Vec<Binding>,
    /// namespace -> bindings sorted by name.
    role_bindings: HashMap<String, Vec<Binding>>,
}

fn rules_of(obj: &Value) -> Vec<PolicyRule> {
    obj.get("rules")
        .and_then(Value::as_array)
        .map(|r| r.iter().map(PolicyRule::from_json).collect())
        .unwrap_or_default()
}

fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

impl RbacSnapshot {
    /// Builds from stored Role, ClusterRole, RoleBinding and ClusterRoleBinding objects
    /// (told apart by `kind`; anything else is ignored).
    pub fn from_objects<'a>(objects: impl IntoIterator<Item = &'a Value>) -> Self {
        let mut stored: BTreeMap<String, StoredClusterRole> = BTreeMap::new();
        let mut snap = RbacSnapshot::default();
        for obj in objects {
            let name = text(obj, "/metadata/name");
            match obj.get("kind").and_then(Value::as_str).unwrap_or("") {
                "ClusterRole" => {
                    let aggregation =
                        obj.get("aggregationRule")
                            .filter(|a| !a.is_null())
                            .map(|a| {
                                a.get("clusterRoleSelectors")
                                    .and_then(Value::as_array)
                                    .map(|s| s.iter().map(Selector::from_json).collect())
                                    .unwrap_or_default()
                            });
                    stored.insert(
                        name,
                        StoredClusterRole {
                            labels: labels_of(obj),
                            rules: rules_of(obj),
                            aggregation,
                        },
                    );
                }
                "Role" => {
                    let ns = text(obj, "/metadata/namespace");
                    snap.roles.insert((ns, name), Arc::new(rules_of(obj)));
                }
                "ClusterRoleBinding" => {
                    let mut b = Binding::from_json(obj);
                    b.namespace.clear();
                    snap.cluster_role_bindings.push(b);
                }
                "RoleBinding" => {
                    let b = Binding::from_json(obj);
                    snap.role_bindings
                        .entry(b.namespace.clone())
                        .or_default()
                        .push(b);
                }
                _ => {}
            }
        }
        snap.cluster_role_bindings
            .sort_by(|a, b| a.name.cmp(&b.name));
        for list in snap.role_bindings.values_mut() {
            list.sort_by(|a, b| a.name.cmp(&b.name));
        }
        let mut effective: HashMap<String, Arc<Vec<PolicyRule>>> = HashMap::new();
        for name in stored.keys() {
            let mut visiting = HashSet::new();
            aggregate(name, &stored, &mut effective, &mut visiting);
        }
        snap.cluster_roles = effective;
        snap
    }

    /// The effective rules of a ClusterRole (aggregation resolved).
    pub fn cluster_role_rules(&self, name: &str) -> Option<&[PolicyRule]> {
        self.cluster_roles.get(name).map(|r| r.as_slice())
    }

    pub fn is_empty(&self) -> bool {
        self.cluster_roles.is_empty()
            && self.roles.is_empty()
            && self.cluster_role_bindings.is_empty()
            && self.role_bindings.is_empty()
    }

    /// Upstream's `GetRoleReferenceRules`.
    fn role_ref_rules(
        &self,
        role_ref: &RoleRef,
        binding_namespace: &str,
    ) -> Result<Arc<Vec<PolicyRule>>, String> {
        match role_ref.kind.as_str() {
            "Role" => self
                .roles
                .get(&(binding_namespace.to_string(), role_ref.name.clone()))
                .cloned()
                .ok_or_else(|| format!("role.{GROUP} \"{}\" not found", role_ref.name)),
            "ClusterRole" => self
                .cluster_roles
                .get(&role_ref.name)
                .cloned()
                .ok_or_else(|| format!("clusterrole.{GROUP} \"{}\" not found", role_ref.name)),
            other => Err(format!("unsupported role reference kind: \"{other}\"")),
        }
    }

    /// Upstream's `VisitRulesFor`: every rule that applies to `user` in `namespace` with
    /// where it comes from, until `visit` returns false; role lookups that fail are errors.
    fn visit_rules_for(
        &self,
        user: &UserInfo,
        namespace: &str,
        visit: &mut dyn FnMut(Visited<'_>) -> bool,
    ) {
        let namespaced = if namespace.is_empty() {
            None
        } else {
            self.role_bindings.get(namespace)
        };
        for b in self
            .cluster_role_bindings
            .iter()
            .chain(namespaced.into_iter().flatten())
        {
            let Some(subject) = b.subject_for(user) else {
                continue;
            };
            match self.role_ref_rules(&b.role_ref, &b.namespace) {
                Ok(rules) => {
                    for r in rules.iter() {
                        if !visit(Visited::Rule(b, subject, r)) {
                            return;
                        }
                    }
                }
                Err(e) => {
                    if !visit(Visited::Error(e)) {
                        return;
                    }
                }
            }
        }
    }

    /// Upstream's `RulesFor`: the rules that apply to `user` in `namespace`, and the lookup
    /// errors as one message.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<PolicyRule>, String) {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        self.visit_rules_for(user, namespace, &mut |v| {
            match v {
                Visited::Rule(_, _, r) => rules.push(r.clone()),
                Visited::Error(e) => errors.push(e),
            }
            true
        });
        (rules, aggregate_errors(&errors))
    }
}

/// The effective rules of ClusterRole `name`: for an aggregated role the union (in name
/// order, without duplicates) of the effective rules of every other ClusterRole its
/// selectors match, as the aggregation controller writes them; otherwise its own.
fn aggregate(
    name: &str,
    stored: &BTreeMap<String, StoredClusterRole>,
    effective: &mut HashMap<String, Arc<Vec<PolicyRule>>>,
    visiting: &mut HashSet<String>,
) -> Arc<Vec<PolicyRule>> {
    if let Some(r) = effective.get(name) {
        return r.clone();
    }
    let Some(role) = stored.get(name) else {
        return Arc::new(Vec::new());
    };
    let Some(selectors) = &role.aggregation else {
        let r = Arc::new(role.rules.clone());
        effective.insert(name.to_string(), r.clone());
        return r;
    };
    if !visiting.insert(name.to_string()) {
        // A cycle: what is stored stands in for what the controller would have written.
        return Arc::new(role.rules.clone());
    }
    let mut rules: Vec<PolicyRule> = Vec::new();
    for sel in selectors {
        for (other, o) in stored {
            if other == name || !sel.matches(&o.labels) {
                continue;
            }
            for r in aggregate(other, stored, effective, visiting).iter() {
                if !rules.contains(r) {
                    rules.push(r.clone());
                }
            }
        }
    }
    visiting.remove(name);
    let r = Arc::new(rules);
    effective.insert(name.to_string(), r.clone());
    r
}

/// `utilerrors.NewAggregate(errs).Error()`.
fn aggregate_errors(errors: &[String]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for e in errors {
        if !seen.contains(&e.as_str()) {
            seen.push(e);
        }
    }
    match seen.len() {
        0 => String::new(),
        1 => seen[0].to_string(),
        _ => format!("[{}]", seen.join(", ")),
    }
}

/// What RBAC says about a request, with upstream's reason text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation {
    pub allowed: bool,
    /// `RBAC: allowed by ...` when allowed; when not, the role lookup errors (`RBAC: ...`)
    /// or empty.
    pub reason: String,
}

/// Upstream's `RBACAuthorizer.Authorize`, with the reason.
pub fn evaluate(attrs: &Attributes, rbac: &RbacSnapshot) -> Evaluation {
    let mut reason = None;
    let mut errors = Vec::new();
    rbac.visit_rules_for(&attrs.user, &attrs.namespace, &mut |v| {
        match v {
            Visited::Rule(b, s, r) if r.allows(attrs) => {
                reason = Some(format!("RBAC: allowed by {}", b.describe(s)));
                return false;
            }
            Visited::Rule(..) => {}
            Visited::Error(e) => errors.push(e),
        }
        true
    });
    match reason {
        Some(reason) => Evaluation {
            allowed: true,
            reason,
        },
        None => {
            let errs = aggregate_errors(&errors);
            Evaluation {
                allowed: false,
                reason: if errs.is_empty() {
                    String::new()
                } else {
                    format!("RBAC: {errs}")
                },
            }
        }
    }
}

/// Allow when a binding grants the request; otherwise no opinion (RBAC never denies).
pub fn authorize(attrs: &Attributes, rbac: &RbacSnapshot) -> Decision {
    if evaluate(attrs, rbac).allowed {
        Decision::Allow
    } else {
        Decision::NoOpinion
    }
}

/// The `status.reason` of an access review: `RBAC: allowed by ClusterRoleBinding "x" of
/// ClusterRole "y" to User "z"`, or why nothing allowed it.
pub fn explain(attrs: &Attributes, rbac: &RbacSnapshot) -> String {
    evaluate(attrs, rbac).reason
}

/// Upstream's `ruleCovers`: whether `owner` grants everything the atomic rule `sub` does.
fn rule_covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let has = |set: &[String], v: &str| set.iter().any(|x| x == v);
    let has_all = |set: &[String], vs: &[String]| vs.iter().all(|v| has(set, v));
    let verbs = has(&owner.verbs, VERB_ALL) || has_all(&owner.verbs, &sub.verbs);
    let groups =
        has(&owner.api_groups, API_GROUP_ALL) || has_all(&owner.api_groups, &sub.api_groups);
    let resources = has(&owner.resources, RESOURCE_ALL)
        || sub.resources.iter().all(|r| {
            has(&owner.resources, r)
                || r.split_once('/')
                    .is_some_and(|(_, subres)| has(&owner.resources, &format!("*/{subres}")))
        });
    let urls = sub.non_resource_urls.iter().all(|p| {
        owner
            .non_resource_urls
            .iter()
            .any(|o| o == p || (o.ends_with('*') && p.starts_with(o.trim_end_matches('*'))))
    });
    let names = if sub.resource_names.is_empty() {
        owner.resource_names.is_empty()
    } else {
        owner.resource_names.is_empty() || has_all(&owner.resource_names, &sub.resource_names)
    };
    verbs && groups && resources && urls && names
}

/// Upstream's `BreakdownRule`: one rule per group, resource, verb (and name), and per
/// non-resource URL and verb.
fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let one = |v: &String| vec![v.clone()];
    let mut out = Vec::new();
    for g in &rule.api_groups {
        for r in &rule.resources {
            for v in &rule.verbs {
                let base = PolicyRule {
                    verbs: one(v),
                    api_groups: one(g),
                    resources: one(r),
                    ..Default::default()
                };
                if rule.resource_names.is_empty() {
                    out.push(base);
                } else {
                    for n in &rule.resource_names {
                        out.push(PolicyRule {
                            resource_names: one(n),
                            ..base.clone()
                        });
                    }
                }
            }
        }
    }
    for u in &rule.non_resource_urls {
        for v in &rule.verbs {
            out.push(PolicyRule {
                verbs: one(v),
                non_resource_urls: one(u),
                ..Default::default()
            });
        }
    }
    out
}

/// Upstream's `Covers`: the atomic rules of `servant` that `owner` does not grant.
pub fn uncovered(owner: &[PolicyRule], servant: &[PolicyRule]) -> Vec<PolicyRule> {
    servant
        .iter()
        .flat_map(breakdown)
        .filter(|sub| !owner.iter().any(|o| rule_covers(o, sub)))
        .collect()
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
fn go_quoted(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", items.join(" "))
}

/// Upstream's `CompactString`.
fn compact_string(r: &PolicyRule) -> String {
    let mut parts = Vec::new();
    for (k, v) in [
        ("APIGroups", &r.api_groups),
        ("Resources", &r.resources),
        ("NonResourceURLs", &r.non_resource_urls),
        ("ResourceNames", &r.resource_names),
        ("Verbs", &r.verbs),
    ] {
        if !v.is_empty() {
            parts.push(format!("{k}:{}", go_quoted(v)));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

/// Upstream's `CompactRules` then the sorted, de-duplicated descriptions.
fn describe_missing(missing: &[PolicyRule]) -> Vec<String> {
    let mut simple: Vec<PolicyRule> = Vec::new();
    let mut other: Vec<PolicyRule> = Vec::new();
    for r in missing {
        let is_simple = r.non_resource_urls.is_empty()
            && r.api_groups.len() == 1
            && r.resources.len() == 1
            && r.resource_names.len() <= 1;
        if !is_simple {
            other.push(r.clone());
            continue;
        }
        match simple.iter_mut().find(|s| {
            s.api_groups == r.api_groups
                && s.resources == r.resources
                && s.resource_names == r.resource_names
        }) {
            Some(s) => s.verbs.extend(r.verbs.iter().cloned()),
            None => simple.push(r.clone()),
        }
    }
    let mut out: Vec<String> = other.iter().chain(&simple).map(compact_string).collect();
    out.sort();
    out.dedup();
    out
}

/// Upstream's `ConfirmNoEscalation`: the user must already hold every permission `rules`
/// grant (in `namespace`, or cluster-wide when empty).
fn confirm_no_escalation(
    user: &UserInfo,
    namespace: &str,
    rules: &[PolicyRule],
    snap: &RbacSnapshot,
) -> Result<(), String> {
    let (owner, resolution_errors) = snap.rules_for(user, namespace);
    let missing = uncovered(&owner, rules);
    if missing.is_empty() {
        return Ok(());
    }
    let groups: Vec<String> = user.groups.clone();
    let mut msg = format!(
        "user {:?} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        user.username,
        go_quoted(&groups),
        describe_missing(&missing).join("\n")
    );
    if !resolution_errors.is_empty() {
        msg.push_str(&format!("; resolution errors: [{resolution_errors}]"));
    }
    Err(msg)
}

/// The permission to check for `verb` (`escalate`, `bind`) on an RBAC object.
fn may(
    user: &UserInfo,
    verb: &str,
    resource: &str,
    namespace: &str,
    name: &str,
    snap: &RbacSnapshot,
) -> bool {
    let attrs = Attributes {
        user: user.clone(),
        verb: verb.into(),
        resource_request: true,
        api_group: GROUP.into(),
        resource: resource.into(),
        namespace: namespace.into(),
        name: name.into(),
        ..Default::default()
    };
    authorize(&attrs, snap) == Decision::Allow
}

/// Upstream's RBAC storage rule for creates and updates of the four kinds (privilege
/// escalation prevention): members of `system:masters` may write anything; otherwise a Role
/// or ClusterRole may only grant what the writer holds (or the writer may `escalate` it),
/// and a binding may only reference a role whose permissions the writer holds (or the
/// writer may `bind` it). `namespace` is the request's.
pub fn check_escalation(
    user: &UserInfo,
    namespace: &str,
    kind: &str,
    obj: &Value,
    snap: &RbacSnapshot,
) -> Result<(), crate::api::status::ApiError> {
    use crate::api::status::{ApiError, Subject};
    if !matches!(
        kind,
        "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding"
    ) || user.in_group(super::MASTERS)
    {
        return Ok(());
    }
    let name = text(obj, "/metadata/name");
    let (resource, ns) = match kind {
        "Role" => ("roles", namespace),
        "ClusterRole" => ("clusterroles", ""),
        "RoleBinding" => ("rolebindings", namespace),
        _ => ("clusterrolebindings", ""),
    };
    let forbidden = |why: String| {
        ApiError::Forbidden(format!("{resource}.{GROUP} {name:?} is forbidden: {why}"))
    };
    match kind {
        "Role" | "ClusterRole" => {
            if may(user, "escalate", resource, ns, &name, snap) {
                return Ok(());
            }
            confirm_no_escalation(user, ns, &rules_of(obj), snap).map_err(forbidden)?;
            if kind == "ClusterRole" && obj.get("aggregationRule").is_some_and(|a| !a.is_null()) {
                let full = [
                    PolicyRule {
                        verbs: vec![VERB_ALL.into()],
                        api_groups: vec![API_GROUP_ALL.into()],
                        resources: vec![RESOURCE_ALL.into()],
                        ..Default::default()
                    },
                    PolicyRule {
                        verbs: vec![VERB_ALL.into()],
                        non_resource_urls: vec![NON_RESOURCE_ALL.into()],
                        ..Default::default()
                    },
                ];
                if confirm_no_escalation(user, "", &full, snap).is_err() {
                    return Err(forbidden(
                        "must have cluster-admin privileges to use the aggregationRule".into(),
                    ));
                }
            }
            Ok(())
        }
        _ => {
            let role_ref = RoleRef::from_json(obj.get("roleRef"));
            let ref_resource = match role_ref.kind.as_str() {
                "ClusterRole" => "clusterroles",
                "Role" => "roles",
                _ => "",
            };
            if !ref_resource.is_empty() && may(user, "bind", ref_resource, ns, &role_ref.name, snap)
            {
                return Ok(());
            }
            let rules = snap.role_ref_rules(&role_ref, ns).map_err(|_| {
                let singular = ref_resource.trim_end_matches('s');
                if singular.is_empty() {
                    ApiError::BadRequest(format!(
                        "unsupported role reference kind: {:?}",
                        role_ref.kind
                    ))
                } else {
                    ApiError::not_found(Subject {
                        group: GROUP.into(),
                        kind: singular.into(),
                        name: role_ref.name.clone(),
                    })
                }
            })?;
            confirm_no_escalation(user, ns, &rules, snap).map_err(forbidden)
        }
    }
}

/// Admission of a Role, ClusterRole, RoleBinding or ClusterRoleBinding about to be written
/// (create, update, patch): upstream's defaults, then `check_escalation` for the requester.
/// RBAC's escalation check on writes of roles and bindings (upstream's policy-based
/// storage): a user may grant only what they hold, or bind with the `bind` verb.
pub fn admit(
    ctx: &crate::api::request::Ctx<'_>,
    obj: &Value,
) -> Result<(), crate::api::status::ApiError> {
    let kind = ctx.res().kind;
    if ctx.res().group != GROUP {
        return Ok(());
    }
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .or(ctx.ns())
        .unwrap_or("")
        .to_string();
    let user = UserInfo::of(ctx.req);
    check_escalation(&user, &ns, kind, obj, &ctx.state.rbac.snapshot())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            username: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }
    }

    fn res(
        u: &UserInfo,
        verb: &str,
        ns: &str,
        group: &str,
        resource: &str,
        sub: &str,
        name: &str,
    ) -> Attributes {
        Attributes {
            user: u.clone(),
            verb: verb.into(),
            resource_request: true,
            api_group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            name: name.into(),
            path: String::new(),
        }
    }

    fn non_res(u: &UserInfo, verb: &str, path: &str) -> Attributes {
        Attributes {
            user: u.clone(),
            verb: verb.into(),
            resource_request: false,
            path: path.into(),
            ..Default::default()
        }
    }

    fn rule(v: Value) -> PolicyRule {
        PolicyRule::from_json(&v)
    }

    #[test]
    fn rule_matching_follows_upstream_helpers() {
        let u = user("alice", &[]);
        let cases: Vec<(Value, Attributes, bool)> = vec![
            // verbs and groups
            (
                json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}),
                res(&u, "get", "ns", "", "pods", "", "p"),
                true,
            ),
            (
                json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}),
                res(&u, "list", "ns", "", "pods", "", ""),
                false,
            ),
            (
                json!({"verbs": ["*"], "apiGroups": [""], "resources": ["pods"]}),
                res(&u, "deletecollection", "ns", "", "pods", "", ""),
                true,
            ),
            (
                json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}),
                res(&u, "get", "ns", "apps", "pods", "", "p"),
                false,
            ),
            (
                json!({"verbs": ["get"], "apiGroups": ["*"], "resources": ["deployments"]}),
                res(&u, "get", "ns", "apps", "deployments", "", "d"),
                true,
            ),
            (
                json!({"verbs": ["get"], "resources": ["pods"]}),
                res(&u, "get", "ns", "", "pods", "", "p"),
                false,
            ),
            // subresources
            (
                json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}),
                res(&u, "get", "ns", "", "pods", "log", "p"),
                false,
            ),
            (
                json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods/log"]}),
                res(&u, "get", "ns", "", "pods", "log", "p"),
                true,
            ),
            (
                json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods/log"]}),
                res(&u, "get", "ns", "", "pods", "", "p"),
                false,
            ),
            (
                json!({"verbs": ["update"], "apiGroups": ["apps"], "resources": ["*/scale"]}),
                res(&u, "update", "ns", "apps", "deployments", "scale", "d"),
                true,
            ),
            (
                json!({"verbs": ["update"], "apiGroups": ["apps"], "resources": ["*/scale"]}),
                res(&u, "update", "ns", "apps", "deployments", "", "d"),
                false,
            ),
            (
                json!({"verbs": ["update"], "apiGroups": ["apps"], "resources": ["*/scale"]}),
                res(&u, "update", "ns", "apps", "deployments", "status", "d"),
                false,
            ),
            (
                json!({"verbs": ["get"], "apiGroups": [""], "resources": ["*"]}),
                res(&u, "get", "ns", "", "pods", "exec", "p"),
                true,
            ),
            // resourceNames
            (
                json!({"verbs": ["get", "list", "create"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"]}),
                res(&u, "get", "ns", "", "configmaps", "", "a"),
                true,
            ),
            (
                json!({"verbs": ["get", "list", "create"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"]}),
                res(&u, "get", "ns", "", "configmaps", "", "b"),
                false,
            ),
            (
                json!({"verbs": ["get", "list", "create"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"]}),
                res(&u, "list", "ns", "", "configmaps", "", ""),
                false,
            ),
            (
                json!({"verbs": ["get", "list", "create"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"]}),
                res(&u, "create", "ns", "", "configmaps", "", ""),
                false,
            ),
            // nonResourceURLs
            (
                json!({"verbs": ["get"], "nonResourceURLs": ["/healthz"]}),
                non_res(&u, "get", "/healthz"),
                true,
            ),
            (
                json!({"verbs": ["get"], "nonResourceURLs": ["/healthz"]}),
                non_res(&u, "get", "/healthz/ping"),
                false,
            ),
            (
                json!({"verbs": ["get"], "nonResourceURLs": ["/healthz"]}),
                non_res(&u, "post", "/healthz"),
                false,
            ),
            (
                json!({"verbs": ["get"], "nonResourceURLs": ["/apis/*"]}),
                non_res(&u, "get", "/apis/apps/v1"),
                true,
            ),
            (
                json!({"verbs": ["get"], "nonResourceURLs": ["/apis/*"]}),
                non_res(&u, "get", "/apis"),
                false,
            ),
            (
                json!({"verbs": ["get"], "nonResourceURLs": ["/metrics*"]}),
                non_res(&u, "get", "/metricsfoo"),
                true,
            ),
            (
                json!({"verbs": ["*"], "nonResourceURLs": ["*"]}),
                non_res(&u, "put", "/anything"),
                true,
            ),
            // resource rules never cover non-resource paths, and the reverse
            (
                json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}),
                non_res(&u, "get", "/healthz"),
                false,
            ),
            (
                json!({"verbs": ["*"], "nonResourceURLs": ["*"]}),
                res(&u, "get", "ns", "", "pods", "", "p"),
                false,
            ),
        ];
        for (i, (r, a, want)) in cases.into_iter().enumerate() {
            assert_eq!(rule(r.clone()).allows(&a), want, "case {i}: {r} {a:?}");
        }
    }

    fn objects() -> Vec<Value> {
        vec![
            json!({"kind": "ClusterRole", "metadata": {"name": "pod-reader"}, "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]}),
            json!({"kind": "Role", "metadata": {"name": "cm-writer", "namespace": "team"}, "rules": [{"verbs": ["create"], "apiGroups": [""], "resources": ["configmaps"]}]}),
            json!({"kind": "RoleBinding", "metadata": {"name": "read-pods", "namespace": "team"}, "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "pod-reader"}, "subjects": [{"kind": "User", "apiGroup": GROUP, "name": "alice"}]}),
            json!({"kind": "RoleBinding", "metadata": {"name": "write-cm", "namespace": "team"}, "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "cm-writer"}, "subjects": [{"kind": "ServiceAccount", "name": "builder"}]}),
            json!({"kind": "ClusterRoleBinding", "metadata": {"name": "readers"}, "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "pod-reader"}, "subjects": [{"kind": "Group", "apiGroup": GROUP, "name": "auditors"}, {"kind": "ServiceAccount", "name": "bot", "namespace": "ops"}]}),
            json!({"kind": "ClusterRoleBinding", "metadata": {"name": "dangling"}, "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "gone"}, "subjects": [{"kind": "User", "apiGroup": GROUP, "name": "bob"}]}),
        ]
    }

    #[test]
    fn bindings_scope_and_subjects() {
        let objs = objects();
        let snap = RbacSnapshot::from_objects(&objs);
        let alice = user("alice", &["system:authenticated"]);
        // A RoleBinding to a ClusterRole grants it only in the binding's namespace.
        let e = evaluate(&res(&alice, "get", "team", "", "pods", "", "p"), &snap);
        assert!(e.allowed);
        assert_eq!(
            e.reason,
            "RBAC: allowed by RoleBinding \"read-pods/team\" of ClusterRole \"pod-reader\" to User \"alice\""
        );
        assert!(!evaluate(&res(&alice, "get", "other", "", "pods", "", "p"), &snap).allowed);
        assert!(!evaluate(&res(&alice, "get", "", "", "pods", "", ""), &snap).allowed);
        // Groups.
        let auditor = user("carol", &["auditors"]);
        let e = evaluate(&res(&auditor, "list", "", "", "pods", "", ""), &snap);
        assert_eq!(
            e.reason,
            "RBAC: allowed by ClusterRoleBinding \"readers\" of ClusterRole \"pod-reader\" to Group \"auditors\""
        );
        assert!(!evaluate(&res(&auditor, "delete", "x", "", "pods", "", "p"), &snap).allowed);
        // ServiceAccounts: the namespace defaults to the binding's.
        let builder = user("system:serviceaccount:team:builder", &[]);
        let e = evaluate(
            &res(&builder, "create", "team", "", "configmaps", "", ""),
            &snap,
        );
        assert_eq!(
            e.reason,
            "RBAC: allowed by RoleBinding \"write-cm/team\" of Role \"cm-writer\" to ServiceAccount \"builder/team\""
        );
        let other_builder = user("system:serviceaccount:other:builder", &[]);
        assert!(
            !evaluate(
                &res(&other_builder, "create", "team", "", "configmaps", "", ""),
                &snap
            )
            .allowed
        );
        let bot = user("system:serviceaccount:ops:bot", &[]);
        assert_eq!(
            authorize(&res(&bot, "get", "any", "", "pods", "", "p"), &snap),
            Decision::Allow
        );
        // A binding to a missing role grants nothing and says so.
        let bob = user("bob", &[]);
        let e = evaluate(&res(&bob, "get", "team", "", "pods", "", "p"), &snap);
        assert!(!e.allowed);
        assert_eq!(
            e.reason,
            "RBAC: clusterrole.rbac.authorization.k8s.io \"gone\" not found"
        );
        assert_eq!(
            authorize(
                &res(&user("nobody", &[]), "get", "team", "", "pods", "", "p"),
                &snap
            ),
            Decision::NoOpinion
        );
        // An empty snapshot allows nothing.
        let empty = RbacSnapshot::default();
        assert_eq!(
            authorize(&res(&alice, "get", "team", "", "pods", "", "p"), &empty),
            Decision::NoOpinion
        );
    }

    #[test]
    fn rules_for_lists_what_applies() {
        let objs = objects();
        let snap = RbacSnapshot::from_objects(&objs);
        let (rules, errs) = snap.rules_for(&user("alice", &["auditors"]), "team");
        assert_eq!(rules.len(), 2);
        assert!(errs.is_empty());
        let (rules, errs) = snap.rules_for(&user("bob", &[]), "team");
        assert!(rules.is_empty());
        assert!(errs.contains("\"gone\" not found"));
    }

    #[test]
    fn aggregation_unions_matching_cluster_roles_transitively() {
        let objs = vec![
            json!({"kind": "ClusterRole", "metadata": {"name": "admin"}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg-admin": "true"}}]}}),
            json!({"kind": "ClusterRole", "metadata": {"name": "edit", "labels": {"agg-admin": "true"}}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg-edit": "true"}}]}, "rules": [{"verbs": ["stale"], "apiGroups": [""], "resources": ["x"]}]}),
            json!({"kind": "ClusterRole", "metadata": {"name": "to-edit", "labels": {"agg-edit": "true"}}, "rules": [{"verbs": ["create"], "apiGroups": [""], "resources": ["pods"]}]}),
            json!({"kind": "ClusterRole", "metadata": {"name": "to-edit-2", "labels": {"agg-edit": "true"}}, "rules": [{"verbs": ["create"], "apiGroups": [""], "resources": ["pods"]}, {"verbs": ["delete"], "apiGroups": [""], "resources": ["pods"]}]}),
            json!({"kind": "ClusterRole", "metadata": {"name": "to-admin", "labels": {"agg-admin": "true"}}, "rules": [{"verbs": ["*"], "apiGroups": [GROUP], "resources": ["roles"]}]}),
            json!({"kind": "ClusterRole", "metadata": {"name": "by-expression", "labels": {"tier": "x"}}, "aggregationRule": {"clusterRoleSelectors": [{"matchExpressions": [{"key": "agg-edit", "operator": "Exists"}]}]}}),
            json!({"kind": "RoleBinding", "metadata": {"name": "dev-admin", "namespace": "dev"}, "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "admin"}, "subjects": [{"kind": "User", "apiGroup": GROUP, "name": "dana"}]}),
        ];
        let snap = RbacSnapshot::from_objects(&objs);
        let edit = snap.cluster_role_rules("edit").expect("edit");
        // The stored rules of an aggregated role are replaced; duplicates dropped.
        assert_eq!(edit.len(), 2, "{edit:?}");
        let admin = snap.cluster_role_rules("admin").expect("admin");
        assert_eq!(admin.len(), 3, "{admin:?}");
        assert_eq!(
            snap.cluster_role_rules("by-expression").map(<[_]>::len),
            Some(2)
        );
        let dana = user("dana", &[]);
        assert!(evaluate(&res(&dana, "delete", "dev", "", "pods", "", "p"), &snap).allowed);
        assert!(evaluate(&res(&dana, "update", "dev", GROUP, "roles", "", "r"), &snap).allowed);
        assert!(!evaluate(&res(&dana, "stale", "dev", "", "x", "", "p"), &snap).allowed);
        assert!(!evaluate(&res(&dana, "delete", "prod", "", "pods", "", "p"), &snap).allowed);
        // Cycles end.
        let cyc = vec![
            json!({"kind": "ClusterRole", "metadata": {"name": "a", "labels": {"l": "a"}}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"l": "b"}}]}}),
            json!({"kind": "ClusterRole", "metadata": {"name": "b", "labels": {"l": "b"}}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"l": "a"}}]}}),
        ];
        let snap = RbacSnapshot::from_objects(&cyc);
        assert_eq!(snap.cluster_role_rules("a").map(<[_]>::len), Some(0));
    }

    #[test]
    fn writers_cannot_grant_more_than_they_hold() {
        use crate::api::status::ApiError;
        let mut objs = objects();
        objs.push(json!({"kind": "ClusterRole", "metadata": {"name": "cluster-admin"}, "rules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}, {"verbs": ["*"], "nonResourceURLs": ["*"]}]}));
        objs.push(json!({"kind": "ClusterRole", "metadata": {"name": "binder"}, "rules": [{"verbs": ["bind"], "apiGroups": [GROUP], "resources": ["clusterroles"], "resourceNames": ["cluster-admin"]}]}));
        objs.push(json!({"kind": "RoleBinding", "metadata": {"name": "erin-binds", "namespace": "team"}, "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "binder"}, "subjects": [{"kind": "User", "apiGroup": GROUP, "name": "erin"}]}));
        let snap = RbacSnapshot::from_objects(&objs);
        let alice = user("alice", &["system:authenticated"]);
        let role = |rules: Value| json!({"kind": "Role", "metadata": {"name": "r", "namespace": "team"}, "rules": rules});
        // alice holds get/list pods in team (RoleBinding to pod-reader).
        let within = role(json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]));
        assert!(check_escalation(&alice, "team", "Role", &within, &snap).is_ok());
        let more = role(
            json!([{"verbs": ["get", "delete"], "apiGroups": [""], "resources": ["pods", "secrets"]}]),
        );
        let Err(ApiError::Forbidden(msg)) = check_escalation(&alice, "team", "Role", &more, &snap)
        else {
            panic!("escalation allowed");
        };
        assert_eq!(
            msg,
            "roles.rbac.authorization.k8s.io \"r\" is forbidden: user \"alice\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"delete\"]}"
        );
        assert!(check_escalation(&alice, "other", "Role", &within, &snap).is_err());
        // Bindings: only roles whose permissions the writer holds, or may bind.
        let binding = |role: &str| json!({"kind": "RoleBinding", "metadata": {"name": "b", "namespace": "team"}, "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role}, "subjects": [{"kind": "User", "apiGroup": GROUP, "name": "x"}]});
        assert!(
            check_escalation(&alice, "team", "RoleBinding", &binding("pod-reader"), &snap).is_ok()
        );
        assert!(matches!(
            check_escalation(
                &alice,
                "team",
                "RoleBinding",
                &binding("cluster-admin"),
                &snap
            ),
            Err(ApiError::Forbidden(_))
        ));
        assert!(matches!(
            check_escalation(&alice, "team", "RoleBinding", &binding("nope"), &snap),
            Err(ApiError::NotFound { .. })
        ));
        let erin = user("erin", &[]);
        assert!(check_escalation(
            &erin,
            "team",
            "RoleBinding",
            &binding("cluster-admin"),
            &snap
        )
        .is_ok());
        assert!(check_escalation(
            &erin,
            "other",
            "RoleBinding",
            &binding("cluster-admin"),
            &snap
        )
        .is_err());
        // Aggregation needs everything; system:masters may write anything.
        let agg = json!({"kind": "ClusterRole", "metadata": {"name": "agg"}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"a": "b"}}]}});
        let Err(ApiError::Forbidden(msg)) =
            check_escalation(&alice, "", "ClusterRole", &agg, &snap)
        else {
            panic!("aggregation allowed");
        };
        assert!(msg.ends_with("must have cluster-admin privileges to use the aggregationRule"));
        let root = user("root", &["system:masters"]);
        assert!(check_escalation(&root, "", "ClusterRole", &agg, &snap).is_ok());
    }
}

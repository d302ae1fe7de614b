//! RBAC against a real `skiff server` with real kubectl: `kubectl create role / rolebinding /
//! clusterrole / clusterrolebinding` (protobuf bodies on 1.32+), `kubectl get` with
//! upstream's columns, the immutable `roleRef`, the default roles, and the self reviews
//! (`kubectl auth can-i`, `kubectl auth can-i --list`, `kubectl auth whoami`) for the
//! harness kubeconfig, an admin in `system:masters`; and the reviews about others
//! (TokenReview, SubjectAccessReview, LocalSubjectAccessReview) behind `system:auth-delegator`.

#[path = "common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, PostParams};
use serde_json::Value;
use servers::Servers;

fn cluster() -> &'static Servers {
    static CLUSTER: OnceLock<Servers> = OnceLock::new();
    CLUSTER.get_or_init(|| Servers::start(1, ""))
}

fn ok(args: &[&str]) -> String {
    let (good, out) = cluster().kubectl(args);
    assert!(good, "kubectl {}: {out}", args.join(" "));
    out
}

fn fails(args: &[&str]) -> String {
    let (good, out) = cluster().kubectl(args);
    assert!(!good, "kubectl {} should fail: {out}", args.join(" "));
    out
}

/// Retries `args` until `check` accepts the output (the default roles are created and the
/// RBAC cache follows the store asynchronously).
fn eventually(args: &[&str], check: impl Fn(&str) -> bool) -> String {
    cluster().kubectl_until(args, |_, out| check(out))
}

fn write(name: &str, text: &str) -> String {
    let path = cluster().dir.path().join(name);
    std::fs::write(&path, text).expect("write manifest");
    path.display().to_string()
}

/// The header and the row starting with `name` of `kubectl get` output, split on blanks
/// of two or more.
fn row<'a>(out: &'a str, name: &str) -> (Vec<&'a str>, Vec<&'a str>) {
    let split = |l: &'a str| -> Vec<&'a str> {
        l.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect()
    };
    let mut lines = out.lines();
    let header = split(lines.next().unwrap_or(""));
    let r = lines
        .map(split)
        .find(|cells| cells.first() == Some(&name))
        .unwrap_or_else(|| panic!("no row {name} in\n{out}"));
    (header, r)
}

#[test]
fn create_and_get_roles_and_bindings() {
    ok(&["create", "namespace", "rbac-a"]);
    let out = ok(&[
        "create",
        "role",
        "pod-reader",
        "-n",
        "rbac-a",
        "--verb=get,list,watch",
        "--resource=pods,pods/log",
    ]);
    assert!(
        out.contains("role.rbac.authorization.k8s.io/pod-reader created"),
        "{out}"
    );
    ok(&[
        "create",
        "rolebinding",
        "read-pods",
        "-n",
        "rbac-a",
        "--role=pod-reader",
        "--user=alice",
        "--user=carol",
        "--group=devs",
        "--serviceaccount=rbac-a:builder",
    ]);
    ok(&[
        "create",
        "clusterrole",
        "node-viewer",
        "--verb=get,list,watch",
        "--resource=nodes",
    ]);
    ok(&[
        "create",
        "clusterrole",
        "url-reader",
        "--verb=get",
        "--non-resource-url=/logs/*",
    ]);
    ok(&[
        "create",
        "clusterrolebinding",
        "view-nodes",
        "--clusterrole=node-viewer",
        "--user=bob",
        "--serviceaccount=kube-system:watcher",
    ]);
    // RoleBindings may reference a ClusterRole.
    ok(&[
        "create",
        "rolebinding",
        "view-here",
        "-n",
        "rbac-a",
        "--clusterrole=view",
        "--group=viewers",
    ]);

    let out = ok(&["get", "roles", "-n", "rbac-a"]);
    let (header, r) = row(&out, "pod-reader");
    assert_eq!(header, ["NAME", "CREATED AT"], "{out}");
    assert!(r[1].ends_with('Z') && r[1].contains('T'), "{out}");

    let out = ok(&["get", "rolebindings", "-n", "rbac-a"]);
    let (header, r) = row(&out, "read-pods");
    assert_eq!(header, ["NAME", "ROLE", "AGE"], "{out}");
    assert_eq!(r[1], "Role/pod-reader", "{out}");
    let (_, r) = row(&out, "view-here");
    assert_eq!(r[1], "ClusterRole/view", "{out}");

    let out = ok(&["get", "rolebindings", "-n", "rbac-a", "-o", "wide"]);
    let (header, r) = row(&out, "read-pods");
    assert_eq!(
        header,
        ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"],
        "{out}"
    );
    assert_eq!(
        (r[3], r[4], r[5]),
        ("alice, carol", "devs", "rbac-a/builder"),
        "{out}"
    );

    let out = ok(&["get", "clusterrolebinding", "view-nodes", "-o", "wide"]);
    let (_, r) = row(&out, "view-nodes");
    assert_eq!(r[1], "ClusterRole/node-viewer", "{out}");
    assert!(out.contains("kube-system/watcher"), "{out}");

    let out = ok(&["get", "clusterrole", "node-viewer", "-o", "json"]);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        v["rules"][0]["resources"],
        serde_json::json!(["nodes"]),
        "{out}"
    );
    assert_eq!(v["rules"][0]["apiGroups"], serde_json::json!([""]), "{out}");
    let out = ok(&["get", "clusterrole", "url-reader", "-o", "json"]);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        v["rules"][0]["nonResourceURLs"],
        serde_json::json!(["/logs/*"]),
        "{out}"
    );
    let out = ok(&[
        "get",
        "rolebinding",
        "read-pods",
        "-n",
        "rbac-a",
        "-o",
        "json",
    ]);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        v["roleRef"],
        serde_json::json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"})
    );
    assert_eq!(v["subjects"].as_array().map(Vec::len), Some(4), "{out}");

    // Discovery knows the kinds (no short names upstream).
    let out = ok(&["api-resources", "--api-group=rbac.authorization.k8s.io"]);
    for r in [
        "clusterrolebindings",
        "clusterroles",
        "rolebindings",
        "roles",
    ] {
        assert!(out.contains(r), "{out}");
    }
    ok(&["delete", "rolebinding", "view-here", "-n", "rbac-a"]);
}

#[test]
fn role_ref_is_immutable_and_bindings_are_validated() {
    ok(&["create", "namespace", "rbac-b"]);
    ok(&[
        "create",
        "rolebinding",
        "fixed",
        "-n",
        "rbac-b",
        "--clusterrole=view",
        "--user=dan",
    ]);
    let out = fails(&[
        "patch",
        "rolebinding",
        "fixed",
        "-n",
        "rbac-b",
        "--type=merge",
        "-p",
        r#"{"roleRef":{"name":"edit"}}"#,
    ]);
    assert!(out.contains("is invalid"), "{out}");
    // Upstream's wording since 1.34 (before: "cannot change roleRef").
    assert!(
        out.contains(r#"roleRef: Invalid value: {"APIGroup":"rbac.authorization.k8s.io","Kind":"ClusterRole","Name":"edit"}: field is immutable"#),
        "{out}"
    );
    // Subjects may change.
    ok(&[
        "patch",
        "rolebinding",
        "fixed",
        "-n",
        "rbac-b",
        "--type=merge",
        "-p",
        r#"{"subjects":[{"kind":"User","name":"erin"}]}"#,
    ]);
    let out = ok(&["get", "rolebinding", "fixed", "-n", "rbac-b", "-o", "json"]);
    let v: Value = serde_json::from_str(&out).expect("json");
    // Defaulted like upstream: User subjects get the RBAC group.
    assert_eq!(
        v["subjects"][0]["apiGroup"], "rbac.authorization.k8s.io",
        "{out}"
    );

    // 422 over the API too.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let api: Api<RoleBinding> = Api::namespaced(cluster().client(0), "rbac-b");
        let mut rb = api.get("fixed").await.expect("get");
        rb.role_ref.kind = "Role".into();
        rb.role_ref.name = "other".into();
        match api.replace("fixed", &PostParams::default(), &rb).await {
            Err(kube::Error::Api(e)) => {
                assert_eq!(e.code, 422, "{e:?}");
                assert!(e.message.contains("roleRef: Invalid value: "), "{e:?}");
                assert!(e.message.ends_with("field is immutable"), "{e:?}");
            }
            other => panic!("replace changed roleRef: {other:?}"),
        }
        // Bad subjects and references.
        let bad: RoleBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "bad"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Widget", "name": "x"},
            "subjects": [{"kind": "Robot", "name": "r"}],
        }))
        .expect("binding");
        match api.create(&PostParams::default(), &bad).await {
            Err(kube::Error::Api(e)) => {
                assert_eq!(e.code, 422, "{e:?}");
                assert!(e.message.contains("roleRef.kind"), "{e:?}");
                assert!(e.message.contains("subjects[0].kind"), "{e:?}");
            }
            other => panic!("created an invalid binding: {other:?}"),
        }
    });

    // A ClusterRoleBinding's ServiceAccount needs a namespace; rules need verbs.
    let crb = write(
        "bad-crb.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: bad-crb\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: view\nsubjects:\n- kind: ServiceAccount\n  name: sa\n",
    );
    let out = fails(&["create", "-f", &crb]);
    assert!(out.contains("subjects[0].namespace"), "{out}");
    let role = write(
        "bad-role.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: bad-role\n  namespace: rbac-b\nrules:\n- apiGroups: [\"\"]\n  resources: [pods]\n  verbs: []\n",
    );
    let out = fails(&["create", "-f", &role]);
    assert!(out.contains("rules[0].verbs"), "{out}");
    // Names with colons are fine for RBAC kinds.
    ok(&[
        "create",
        "clusterrole",
        "team:reader",
        "--verb=get",
        "--resource=configmaps",
    ]);
}

#[test]
fn default_roles_exist_and_aggregate() {
    let out = eventually(&["get", "clusterroles"], |o| {
        o.contains("system:public-info-viewer") && o.contains("system:node")
    });
    for name in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:discovery",
        "system:basic-user",
        "system:monitoring",
        "system:aggregate-to-edit",
    ] {
        row(&out, name);
    }
    let out = eventually(&["get", "clusterrolebindings", "-o", "wide"], |o| {
        o.contains("system:public-info-viewer")
    });
    let (_, r) = row(&out, "cluster-admin");
    assert_eq!(r[1], "ClusterRole/cluster-admin", "{out}");
    assert!(r.contains(&"system:masters"), "{out}");
    let (_, r) = row(&out, "system:public-info-viewer");
    assert!(
        r.contains(&"system:authenticated, system:unauthenticated"),
        "{out}"
    );
    let out = ok(&["get", "clusterrole", "edit", "-o", "json"]);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        v["aggregationRule"]["clusterRoleSelectors"][0]["matchLabels"]
            ["rbac.authorization.k8s.io/aggregate-to-edit"],
        "true"
    );
    assert_eq!(
        v["metadata"]["labels"]["kubernetes.io/bootstrapping"],
        "rbac-defaults"
    );
    assert_eq!(
        v["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"],
        "true"
    );
}

#[test]
fn auth_can_i_and_whoami() {
    // The harness kubeconfig is an admin (system:masters).
    let out = eventually(&["auth", "can-i", "create", "pods"], |o| o.trim() == "yes");
    assert_eq!(out.trim(), "yes");
    let out = ok(&[
        "auth",
        "can-i",
        "delete",
        "clusterroles",
        "--all-namespaces",
    ]);
    assert_eq!(out.trim(), "yes");
    let out = ok(&["auth", "can-i", "get", "/metrics"]);
    assert_eq!(out.trim(), "yes");

    let out = ok(&["auth", "whoami"]);
    assert!(out.contains("Username"), "{out}");
    assert!(out.contains("system:masters"), "{out}");
    let out = ok(&["auth", "whoami", "-o", "json"]);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["kind"], "SelfSubjectReview", "{out}");
    assert_eq!(v["apiVersion"], "authentication.k8s.io/v1", "{out}");

    // An access review posted as a manifest echoes the spec with the status.
    let ssar = write(
        "ssar.yaml",
        "apiVersion: authorization.k8s.io/v1\nkind: SelfSubjectAccessReview\nspec:\n  resourceAttributes:\n    namespace: default\n    verb: create\n    resource: pods\n",
    );
    let out = ok(&["create", "-f", &ssar, "-o", "json"]);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["status"]["allowed"], true, "{out}");
    assert_eq!(v["spec"]["resourceAttributes"]["verb"], "create", "{out}");
    let empty = write(
        "ssar-empty.yaml",
        "apiVersion: authorization.k8s.io/v1\nkind: SelfSubjectAccessReview\nspec: {}\n",
    );
    let out = fails(&["create", "-f", &empty]);
    assert!(
        out.contains("exactly one of nonResourceAttributes or resourceAttributes"),
        "{out}"
    );
    // Reviews are create-only.
    fails(&["get", "selfsubjectaccessreviews"]);
}

#[test]
fn rules_review_follows_bindings() {
    // Bound to both the authenticated and the unauthenticated groups, so whoever the harness
    // user is, the rules review lists it once the RBAC cache has seen the binding.
    // (kubectl create clusterrole only takes known verbs and resources; a manifest takes any.)
    let role = write(
        "frobnicator.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: frobnicator\nrules:\n- apiGroups: [example.com]\n  resources: [widgets]\n  verbs: [frobnicate]\n",
    );
    ok(&["create", "-f", &role]);
    ok(&[
        "create",
        "clusterrolebinding",
        "frobnicators",
        "--clusterrole=frobnicator",
        "--group=system:authenticated",
        "--group=system:unauthenticated",
    ]);
    let out = eventually(&["auth", "can-i", "--list", "-n", "default"], |o| {
        o.contains("widgets.example.com")
    });
    assert!(out.contains("[frobnicate]"), "{out}");
    // Removing the binding takes the rule away again.
    ok(&["delete", "clusterrolebinding", "frobnicators"]);
    eventually(&["auth", "can-i", "--list", "-n", "default"], |o| {
        !o.contains("widgets.example.com") && o.contains("Resources")
    });
}

/// kubectl as `token`'s user: (succeeded, output).
fn kubectl_as(token: &str, args: &[&str]) -> (bool, String) {
    let flag = format!("--token={token}");
    let mut all = vec![flag.as_str()];
    all.extend_from_slice(args);
    cluster().kubectl(&all)
}

/// Needs RBAC in the authorizer chain (`auth::authorize` asking `rbac::authorize`).
#[test]
fn service_accounts_get_what_bindings_grant_and_no_more() {
    ok(&["create", "namespace", "rbac-sa"]);
    ok(&["create", "serviceaccount", "dev", "-n", "rbac-sa"]);
    let token = ok(&["create", "token", "dev", "-n", "rbac-sa"])
        .trim()
        .to_string();
    let can = |args: &[&str]| -> String {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        // The answer is the first line (warnings follow).
        let out = kubectl_as(&token, &all).1;
        out.lines().next().unwrap_or("").trim().to_string()
    };

    // Authenticated users may ask about themselves (system:basic-user).
    let (good, out) = kubectl_as(&token, &["auth", "whoami"]);
    assert!(good, "{out}");
    assert!(out.contains("system:serviceaccount:rbac-sa:dev"), "{out}");
    assert_eq!(can(&["list", "pods", "-n", "rbac-sa"]), "no");
    let (good, out) = kubectl_as(&token, &["get", "pods", "-n", "rbac-sa"]);
    assert!(!good && out.contains("Forbidden"), "{out}");

    // A RoleBinding to the aggregated `view` ClusterRole, in one namespace only.
    ok(&[
        "create",
        "rolebinding",
        "dev-view",
        "-n",
        "rbac-sa",
        "--clusterrole=view",
        "--serviceaccount=rbac-sa:dev",
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while can(&["list", "pods", "-n", "rbac-sa"]) != "yes" {
        assert!(Instant::now() < deadline, "the binding never took effect");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(can(&["list", "pods", "-n", "default"]), "no");
    assert_eq!(can(&["get", "secrets", "-n", "rbac-sa"]), "no");
    assert_eq!(can(&["create", "deployments", "-n", "rbac-sa"]), "no");
    let (good, out) = kubectl_as(&token, &["get", "deployments", "-n", "rbac-sa"]);
    assert!(good, "{out}");

    // As namespace admin it may bind what it holds, never more.
    ok(&[
        "create",
        "rolebinding",
        "dev-admin",
        "-n",
        "rbac-sa",
        "--clusterrole=admin",
        "--serviceaccount=rbac-sa:dev",
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while can(&["create", "rolebindings", "-n", "rbac-sa"]) != "yes" {
        assert!(
            Instant::now() < deadline,
            "the admin binding never took effect"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (good, out) = kubectl_as(
        &token,
        &[
            "create",
            "rolebinding",
            "share-edit",
            "-n",
            "rbac-sa",
            "--clusterrole=edit",
            "--user=friend",
        ],
    );
    assert!(good, "{out}");
    let (good, out) = kubectl_as(
        &token,
        &[
            "create",
            "rolebinding",
            "grab-all",
            "-n",
            "rbac-sa",
            "--clusterrole=cluster-admin",
            "--serviceaccount=rbac-sa:dev",
        ],
    );
    assert!(!good, "{out}");
    assert!(
        out.contains("is attempting to grant RBAC permissions not currently held"),
        "{out}"
    );
    let (good, out) = kubectl_as(
        &token,
        &[
            "create",
            "role",
            "nodes",
            "-n",
            "rbac-sa",
            "--verb=get",
            "--resource=secrets,nodes",
        ],
    );
    assert!(!good && out.contains("Forbidden"), "{out}");
    assert_eq!(can(&["get", "nodes"]), "no");
}

/// A review posted as a manifest with kubectl (as the admin, or as `token`'s user), parsed.
fn review(name: &str, manifest: &str, token: Option<&str>) -> Result<Value, String> {
    let file = write(name, manifest);
    let args = ["create", "-f", &file, "-o", "json"];
    let (good, out) = match token {
        Some(t) => kubectl_as(t, &args),
        None => cluster().kubectl(&args),
    };
    if !good {
        return Err(out);
    }
    serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))
}

fn token_review(token: &str, audiences: &str) -> String {
    format!("apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nspec:\n  token: {token}\n  audiences: [{audiences}]\n")
}

/// TokenReview and (Local)SubjectAccessReview, as Vault or kube-rbac-proxy use them: answers
/// about another user's token and permissions, only for callers allowed to ask.
#[test]
fn token_and_subject_access_reviews_answer_for_others() {
    ok(&["create", "namespace", "rbac-del"]);
    ok(&["create", "serviceaccount", "checker", "-n", "rbac-del"]);
    let api_token = ok(&["create", "token", "checker", "-n", "rbac-del"]);
    let vault_token = ok(&[
        "create",
        "token",
        "checker",
        "-n",
        "rbac-del",
        "--audience",
        "vault",
    ]);

    // The API's audience by default: the user, their groups and the audience.
    let v = review("tr1.yaml", &token_review(api_token.trim(), ""), None).expect("review");
    assert_eq!(v["kind"], "TokenReview", "{v}");
    assert_eq!(v["status"]["authenticated"], true, "{v}");
    let user = &v["status"]["user"];
    assert_eq!(
        user["username"], "system:serviceaccount:rbac-del:checker",
        "{v}"
    );
    assert!(user["uid"].as_str().is_some_and(|u| !u.is_empty()), "{v}");
    let groups = user["groups"].to_string();
    assert!(
        groups.contains("\"system:serviceaccounts:rbac-del\""),
        "{v}"
    );
    assert!(groups.contains("\"system:authenticated\""), "{v}");
    assert_eq!(
        v["status"]["audiences"],
        serde_json::json!(["https://kubernetes.default.svc.cluster.local"]),
        "{v}"
    );
    // A token for another audience is valid for that one only.
    let v = review(
        "tr2.yaml",
        &token_review(vault_token.trim(), "vault, other"),
        None,
    )
    .expect("review");
    assert_eq!(v["status"]["authenticated"], true, "{v}");
    assert_eq!(
        v["status"]["audiences"],
        serde_json::json!(["vault"]),
        "{v}"
    );
    for (file, token, auds) in [
        ("tr3.yaml", vault_token.trim(), ""),
        ("tr4.yaml", api_token.trim(), "vault"),
        ("tr5.yaml", "not-a-token", ""),
    ] {
        let v = review(file, &token_review(token, auds), None).expect("review");
        assert!(v["status"].get("authenticated").is_none(), "{v}");
        assert_eq!(v["status"]["error"], "invalid bearer token", "{v}");
    }
    let err = review("tr6.yaml", &token_review("\"\"", ""), None).expect_err("no token");
    assert!(err.contains("token is required for TokenReview"), "{err}");

    // Subject access reviews follow RBAC for the user named in the spec.
    let sar = |verb: &str| {
        format!("apiVersion: authorization.k8s.io/v1\nkind: SubjectAccessReview\nspec:\n  user: jane\n  groups: [dev]\n  resourceAttributes:\n    namespace: rbac-del\n    verb: {verb}\n    resource: pods\n")
    };
    let v = review("sar1.yaml", &sar("list"), None).expect("review");
    assert_eq!(v["status"]["allowed"], false, "{v}");
    ok(&[
        "create",
        "rolebinding",
        "jane-view",
        "-n",
        "rbac-del",
        "--clusterrole=view",
        "--user=jane",
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let v = loop {
        let v = review("sar2.yaml", &sar("list"), None).expect("review");
        if v["status"]["allowed"] == true {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "the binding never took effect: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let reason = v["status"]["reason"].as_str().unwrap_or("");
    assert!(reason.contains("RoleBinding \"jane-view/rbac-del\""), "{v}");
    let v = review("sar3.yaml", &sar("delete"), None).expect("review");
    assert_eq!(v["status"]["allowed"], false, "{v}");
    let err = review(
        "sar4.yaml",
        "apiVersion: authorization.k8s.io/v1\nkind: SubjectAccessReview\nspec:\n  resourceAttributes:\n    verb: get\n",
        None,
    )
    .expect_err("no subject");
    assert!(
        err.contains("at least one of user or group must be specified"),
        "{err}"
    );

    // The local review is bound to its namespace.
    let local = |ns: &str| {
        format!("apiVersion: authorization.k8s.io/v1\nkind: LocalSubjectAccessReview\nmetadata:\n  namespace: rbac-del\nspec:\n  user: jane\n  resourceAttributes:\n    namespace: {ns}\n    verb: list\n    resource: pods\n")
    };
    let v = review("lsar1.yaml", &local("rbac-del"), None).expect("review");
    assert_eq!(v["status"]["allowed"], true, "{v}");
    assert_eq!(v["metadata"]["namespace"], "rbac-del", "{v}");
    let err = review("lsar2.yaml", &local("default"), None).expect_err("other namespace");
    assert!(err.contains("must match metadata.namespace"), "{err}");

    // Asking takes system:auth-delegator (or another grant of create on the reviews).
    ok(&["create", "serviceaccount", "proxy", "-n", "rbac-del"]);
    let proxy = ok(&["create", "token", "proxy", "-n", "rbac-del"]);
    let err = review(
        "tr7.yaml",
        &token_review(api_token.trim(), ""),
        Some(proxy.trim()),
    )
    .expect_err("not a delegator");
    assert!(
        err.contains("Forbidden") || err.contains("forbidden"),
        "{err}"
    );
    ok(&[
        "create",
        "clusterrolebinding",
        "proxy-delegator",
        "--clusterrole=system:auth-delegator",
        "--serviceaccount=rbac-del:proxy",
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let v = loop {
        match review(
            "tr8.yaml",
            &token_review(api_token.trim(), ""),
            Some(proxy.trim()),
        ) {
            Ok(v) => break v,
            Err(e) => assert!(Instant::now() < deadline, "never allowed: {e}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(v["status"]["authenticated"], true, "{v}");
    let v = review("sar5.yaml", &sar("list"), Some(proxy.trim())).expect("delegator asks");
    assert_eq!(v["status"]["allowed"], true, "{v}");
}

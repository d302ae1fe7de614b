//! The Pod Security Standards' checks (upstream's pod-security-admission `policy` package):
//! each returns a reason and a detail, in upstream's words, for what breaks its rule. The
//! baseline checks come first, then the restricted ones, each group by check id, as upstream
//! orders them; at restricted, a restricted check replaces the baseline check it tightens.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EphemeralContainer, LifecycleHandler, PodSpec, Probe, SecurityContext,
};

use super::policy::{Level, LevelVersion, Version};

/// One broken rule: `reason (detail)` in messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub reason: String,
    pub detail: String,
}

/// What a check reads of a container (regular, init or ephemeral).
struct Ctr<'a> {
    name: &'a str,
    sc: Option<&'a SecurityContext>,
    ports: &'a [ContainerPort],
    probes: [Option<&'a Probe>; 3],
    hooks: [Option<&'a LifecycleHandler>; 2],
}

/// A `Ctr` of a `Container` or an `EphemeralContainer` (same fields, different types).
macro_rules! ctr {
    ($c:expr) => {{
        let c = $c;
        let lc = c.lifecycle.as_ref();
        Ctr {
            name: &c.name,
            sc: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or_default(),
            probes: [
                c.liveness_probe.as_ref(),
                c.readiness_probe.as_ref(),
                c.startup_probe.as_ref(),
            ],
            hooks: [
                lc.and_then(|l| l.post_start.as_ref()),
                lc.and_then(|l| l.pre_stop.as_ref()),
            ],
        }
    }};
}

/// A pod as the checks see it.
pub struct PodView<'a> {
    annotations: &'a BTreeMap<String, String>,
    spec: &'a PodSpec,
    containers: Vec<Ctr<'a>>,
    version: Version,
}

impl<'a> PodView<'a> {
    pub fn new(annotations: &'a BTreeMap<String, String>, spec: &'a PodSpec) -> Self {
        let mut containers: Vec<Ctr<'a>> = Vec::new();
        containers.extend(
            spec.init_containers
                .iter()
                .flatten()
                .map(|c: &'a Container| ctr!(c)),
        );
        containers.extend(spec.containers.iter().map(|c: &'a Container| ctr!(c)));
        containers.extend(
            spec.ephemeral_containers
                .iter()
                .flatten()
                .map(|c: &'a EphemeralContainer| ctr!(c)),
        );
        PodView {
            annotations,
            spec,
            containers,
            version: Version::LATEST,
        }
    }

    fn windows(&self) -> bool {
        self.version.at_least(25) && self.spec.os.as_ref().is_some_and(|os| os.name == "windows")
    }

    /// A pod in its own user namespace gets some rules relaxed (1.35+).
    fn user_namespaced(&self) -> bool {
        self.version.at_least(35) && self.spec.host_users == Some(false)
    }

    /// Names of the containers for which `bad` holds.
    fn containers_where(&self, mut bad: impl FnMut(&Ctr<'a>) -> bool) -> Vec<&'a str> {
        self.containers
            .iter()
            .filter(|c| bad(c))
            .map(|c| c.name)
            .collect()
    }
}

fn plural<'s>(one: &'s str, many: &'s str, n: usize) -> &'s str {
    if n == 1 {
        one
    } else {
        many
    }
}

fn quoted<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    let items: Vec<String> = items
        .into_iter()
        .map(|s| format!("\"{}\"", s.as_ref()))
        .collect();
    items.join(", ")
}

/// `container "a"` or `containers "a", "b"`.
fn named(names: &[&str]) -> String {
    format!(
        "{} {}",
        plural("container", "containers", names.len()),
        quoted(names)
    )
}

/// The setters that broke a rule: the pod, and then the containers (`pod and container "a"`).
fn setters(pod: bool, containers: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    if pod {
        out.push("pod".to_string());
    }
    if !containers.is_empty() {
        out.push(named(containers));
    }
    out
}

fn finding(reason: impl Into<String>, detail: impl Into<String>) -> Option<Finding> {
    Some(Finding {
        reason: reason.into(),
        detail: detail.into(),
    })
}

type Check = fn(&PodView<'_>) -> Option<Finding>;

/// Checks in upstream's order for `lv`: every baseline check not replaced at this level,
/// then the restricted ones.
fn checks(lv: LevelVersion) -> Vec<Check> {
    let v = lv.version;
    let restricted = lv.level == Level::Restricted;
    let mut out: Vec<Check> = vec![app_armor];
    if !(restricted && v.at_least(22)) {
        out.push(capabilities_baseline);
    }
    out.push(host_namespaces);
    if !restricted {
        out.push(host_path_volumes);
    }
    out.push(host_ports);
    if v.at_least(34) {
        out.push(host_probes);
    }
    out.push(privileged);
    if !(restricted && v.at_least(35)) {
        out.push(proc_mount_baseline);
    }
    out.push(se_linux_options);
    if !(restricted && v.at_least(19)) {
        out.push(seccomp_baseline);
    }
    out.push(sysctls);
    out.push(windows_host_process);
    if restricted {
        out.push(allow_privilege_escalation);
        if v.at_least(22) {
            out.push(capabilities_restricted);
        }
        if v.at_least(35) {
            out.push(proc_mount);
        }
        out.push(restricted_volumes);
        out.push(run_as_non_root);
        if v.at_least(23) {
            out.push(run_as_user);
        }
        if v.at_least(19) {
            out.push(seccomp_restricted);
        }
    }
    out
}

/// What `pod` breaks of the standard at `lv` (nothing at privileged).
pub fn evaluate(lv: LevelVersion, pod: &mut PodView<'_>) -> Vec<Finding> {
    if lv.level == Level::Privileged {
        return Vec::new();
    }
    pod.version = lv.version;
    checks(lv).into_iter().filter_map(|c| c(pod)).collect()
}

/// `reason (detail), reason (detail)`, as upstream's messages list them.
pub fn describe(findings: &[Finding]) -> String {
    let parts: Vec<String> = findings
        .iter()
        .map(|f| {
            if f.detail.is_empty() {
                f.reason.clone()
            } else {
                format!("{} ({})", f.reason, f.detail)
            }
        })
        .collect();
    parts.join(", ")
}

const CAPABILITIES_BASELINE: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn added<'a>(c: &Ctr<'a>) -> &'a [String] {
    c.sc.and_then(|s| s.capabilities.as_ref())
        .and_then(|cap| cap.add.as_deref())
        .unwrap_or_default()
}

fn app_armor(p: &PodView<'_>) -> Option<Finding> {
    let ok = |t: &str| matches!(t, "RuntimeDefault" | "Localhost");
    let mut values = BTreeSet::new();
    let pod_bad = p
        .spec
        .security_context
        .as_ref()
        .and_then(|s| s.app_armor_profile.as_ref())
        .filter(|a| !ok(&a.type_))
        .map(|a| values.insert(a.type_.clone()))
        .is_some();
    let mut bad = Vec::new();
    for c in &p.containers {
        if let Some(a) = c.sc.and_then(|s| s.app_armor_profile.as_ref()) {
            if !ok(&a.type_) {
                bad.push(c.name);
                values.insert(a.type_.clone());
            }
        }
    }
    let mut list: Vec<String> = values.into_iter().collect();
    let mut who = setters(pod_bad, &bad);
    let annotations: BTreeSet<String> = p
        .annotations
        .iter()
        .filter(|(k, v)| {
            k.starts_with("container.apparmor.security.beta.kubernetes.io/")
                && !(v.is_empty() || *v == "runtime/default" || v.starts_with("localhost/"))
        })
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    if !annotations.is_empty() {
        who.push(plural("annotation", "annotations", annotations.len()).into());
        list.extend(annotations);
    }
    if who.is_empty() {
        return None;
    }
    finding(
        plural(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            list.len(),
        ),
        format!(
            "{} must not set AppArmor profile type to {}",
            who.join(" and "),
            quoted(&list)
        ),
    )
}

fn capabilities_baseline(p: &PodView<'_>) -> Option<Finding> {
    let mut caps = BTreeSet::new();
    let bad = p.containers_where(|c| {
        let extra: Vec<&String> = added(c)
            .iter()
            .filter(|a| !CAPABILITIES_BASELINE.contains(&a.as_str()))
            .collect();
        caps.extend(extra.iter().map(|s| s.to_string()));
        !extra.is_empty()
    });
    if bad.is_empty() {
        return None;
    }
    finding(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            named(&bad),
            quoted(&caps)
        ),
    )
}

fn host_namespaces(p: &PodView<'_>) -> Option<Finding> {
    let s = p.spec;
    let set: Vec<&str> = [
        (s.host_network, "hostNetwork=true"),
        (s.host_pid, "hostPID=true"),
        (s.host_ipc, "hostIPC=true"),
    ]
    .into_iter()
    .filter(|(on, _)| *on == Some(true))
    .map(|(_, what)| what)
    .collect();
    (!set.is_empty())
        .then(|| finding("host namespaces", set.join(", ")))
        .flatten()
}

fn host_path_volumes(p: &PodView<'_>) -> Option<Finding> {
    let names: Vec<&str> = p
        .spec
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.host_path.is_some())
        .map(|v| v.name.as_str())
        .collect();
    if names.is_empty() {
        return None;
    }
    finding(
        "hostPath volumes",
        format!(
            "{} {}",
            plural("volume", "volumes", names.len()),
            quoted(&names)
        ),
    )
}

fn host_ports(p: &PodView<'_>) -> Option<Finding> {
    // Upstream lists the ports as sorted strings.
    let mut ports = BTreeSet::new();
    let bad = p.containers_where(|c| {
        let used: Vec<String> = c
            .ports
            .iter()
            .filter_map(|port| port.host_port.filter(|h| *h != 0))
            .map(|h| h.to_string())
            .collect();
        ports.extend(used.iter().cloned());
        !used.is_empty()
    });
    if bad.is_empty() {
        return None;
    }
    let ports: Vec<String> = ports.into_iter().collect();
    finding(
        "hostPort",
        format!(
            "{} {} {} {}",
            named(&bad),
            plural("uses", "use", bad.len()),
            plural("hostPort", "hostPorts", ports.len()),
            ports.join(", ")
        ),
    )
}

fn host_probes(p: &PodView<'_>) -> Option<Finding> {
    let mut hosts = BTreeSet::new();
    let mut bad = BTreeSet::new();
    for c in &p.containers {
        let from_probes = c.probes.iter().flatten().flat_map(|pr| {
            [
                pr.http_get.as_ref().and_then(|h| h.host.clone()),
                pr.tcp_socket.as_ref().and_then(|t| t.host.clone()),
            ]
        });
        let from_hooks = c.hooks.iter().flatten().flat_map(|h| {
            [
                h.http_get.as_ref().and_then(|g| g.host.clone()),
                h.tcp_socket.as_ref().and_then(|t| t.host.clone()),
            ]
        });
        for host in from_probes.chain(from_hooks).flatten() {
            if !host.is_empty() {
                hosts.insert(host);
                bad.insert(c.name);
            }
        }
    }
    if bad.is_empty() {
        return None;
    }
    let bad: Vec<&str> = bad.into_iter().collect();
    finding(
        "probe or lifecycle host",
        format!(
            "{} {} {} {}",
            named(&bad),
            plural("uses", "use", bad.len()),
            plural(
                "probe or lifecycle host",
                "probe or lifecycle hosts",
                hosts.len()
            ),
            quoted(&hosts)
        ),
    )
}

fn privileged(p: &PodView<'_>) -> Option<Finding> {
    let bad = p.containers_where(|c| c.sc.and_then(|s| s.privileged) == Some(true));
    if bad.is_empty() {
        return None;
    }
    finding(
        "privileged",
        format!(
            "{} must not set securityContext.privileged=true",
            named(&bad)
        ),
    )
}

fn proc_mount_baseline(p: &PodView<'_>) -> Option<Finding> {
    if p.user_namespaced() {
        return None;
    }
    proc_mount(p)
}

fn proc_mount(p: &PodView<'_>) -> Option<Finding> {
    let mut kinds = BTreeSet::new();
    let bad = p.containers_where(|c| match c.sc.and_then(|s| s.proc_mount.as_deref()) {
        Some(m) if m != "Default" => {
            kinds.insert(m.to_string());
            true
        }
        _ => false,
    });
    if bad.is_empty() {
        return None;
    }
    finding(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            named(&bad),
            quoted(&kinds)
        ),
    )
}

fn se_linux_options(p: &PodView<'_>) -> Option<Finding> {
    let mut allowed = vec!["", "container_t", "container_init_t", "container_kvm_t"];
    if p.version.at_least(31) {
        allowed.push("container_engine_t");
    }
    let (mut types, mut user, mut role) = (BTreeSet::new(), false, false);
    let mut valid = |o: &k8s_openapi::api::core::v1::SELinuxOptions| {
        let t = o.type_.as_deref().unwrap_or("");
        let mut ok = true;
        if !allowed.contains(&t) {
            types.insert(t.to_string());
            ok = false;
        }
        if o.user.as_deref().is_some_and(|u| !u.is_empty()) {
            (user, ok) = (true, false);
        }
        if o.role.as_deref().is_some_and(|r| !r.is_empty()) {
            (role, ok) = (true, false);
        }
        ok
    };
    let pod_opts = p.spec.security_context.as_ref();
    let pod_bad = pod_opts
        .and_then(|s| s.se_linux_options.as_ref())
        .is_some_and(|o| !valid(o));
    let mut bad = Vec::new();
    for c in &p.containers {
        if let Some(o) = c.sc.and_then(|s| s.se_linux_options.as_ref()) {
            if !valid(o) {
                bad.push(c.name);
            }
        }
    }
    let who = setters(pod_bad, &bad);
    if who.is_empty() {
        return None;
    }
    let mut data = Vec::new();
    if !types.is_empty() {
        data.push(format!(
            "{} {}",
            plural("type", "types", types.len()),
            quoted(&types)
        ));
    }
    if user {
        data.push("user may not be set".into());
    }
    if role {
        data.push("role may not be set".into());
    }
    finding(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            who.join(" and "),
            data.join("; ")
        ),
    )
}

fn seccomp_ok(t: &str) -> bool {
    matches!(t, "RuntimeDefault" | "Localhost")
}

/// The pod's and containers' explicit seccomp types that are not allowed, and whether the
/// pod sets an allowed one (which containers then inherit).
fn seccomp_setters<'a>(p: &PodView<'a>) -> (Vec<String>, BTreeSet<String>, bool) {
    let mut values = BTreeSet::new();
    let pod_type = p
        .spec
        .security_context
        .as_ref()
        .and_then(|s| s.seccomp_profile.as_ref())
        .map(|s| s.type_.as_str());
    let pod_bad = pod_type.is_some_and(|t| !seccomp_ok(t));
    if let Some(t) = pod_type.filter(|t| !seccomp_ok(t)) {
        values.insert(t.to_string());
    }
    let mut bad = Vec::new();
    for c in &p.containers {
        if let Some(s) = c.sc.and_then(|s| s.seccomp_profile.as_ref()) {
            if !seccomp_ok(&s.type_) {
                bad.push(c.name);
                values.insert(s.type_.clone());
            }
        }
    }
    let pod_ok = pod_type.is_some_and(seccomp_ok);
    (setters(pod_bad, &bad), values, pod_ok)
}

fn seccomp_baseline(p: &PodView<'_>) -> Option<Finding> {
    if !p.version.at_least(19) {
        // Before fields, the profile was set by annotations.
        let ok = |v: &str| {
            matches!(v, "runtime/default" | "docker/default") || v.starts_with("localhost/")
        };
        let pod_key = "seccomp.security.alpha.kubernetes.io/pod";
        let mut keys = vec![pod_key.to_string()];
        keys.extend(
            p.containers
                .iter()
                .map(|c| format!("container.seccomp.security.alpha.kubernetes.io/{}", c.name)),
        );
        let bad: BTreeSet<String> = keys
            .iter()
            .filter_map(|k| {
                p.annotations
                    .get(k)
                    .filter(|v| !ok(v))
                    .map(|v| format!("{k}={v:?}"))
            })
            .collect();
        if bad.is_empty() {
            return None;
        }
        let bad: Vec<String> = bad.into_iter().collect();
        return finding(
            "seccompProfile",
            format!(
                "forbidden {} {}",
                plural("annotation", "annotations", bad.len()),
                bad.join(", ")
            ),
        );
    }
    let (who, values, _) = seccomp_setters(p);
    if who.is_empty() {
        return None;
    }
    finding(
        "seccompProfile",
        format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            who.join(" and "),
            quoted(&values)
        ),
    )
}

fn seccomp_restricted(p: &PodView<'_>) -> Option<Finding> {
    if p.windows() {
        return None;
    }
    let (who, values, pod_ok) = seccomp_setters(p);
    if !who.is_empty() {
        return finding(
            "seccompProfile",
            format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                who.join(" and "),
                quoted(&values)
            ),
        );
    }
    let implicit =
        p.containers_where(|c| c.sc.and_then(|s| s.seccomp_profile.as_ref()).is_none() && !pod_ok);
    if implicit.is_empty() {
        return None;
    }
    finding(
        "seccompProfile",
        format!(
            "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
            named(&implicit)
        ),
    )
}

fn sysctls(p: &PodView<'_>) -> Option<Finding> {
    let v = p.version;
    let allowed = |name: &str| {
        matches!(
            name,
            "kernel.shm_rmid_forced"
                | "net.ipv4.ip_local_port_range"
                | "net.ipv4.tcp_syncookies"
                | "net.ipv4.ping_group_range"
                | "net.ipv4.ip_unprivileged_port_start"
        ) || (v.at_least(27) && name == "net.ipv4.ip_local_reserved_ports")
            || (v.at_least(29)
                && matches!(
                    name,
                    "net.ipv4.tcp_keepalive_time"
                        | "net.ipv4.tcp_fin_timeout"
                        | "net.ipv4.tcp_keepalive_intvl"
                        | "net.ipv4.tcp_keepalive_probes"
                ))
            || (v.at_least(32) && matches!(name, "net.ipv4.tcp_rmem" | "net.ipv4.tcp_wmem"))
            || (v.at_least(37)
                && matches!(
                    name,
                    "net.ipv4.tcp_slow_start_after_idle" | "net.ipv4.tcp_notsent_lowat"
                ))
    };
    let bad: Vec<&str> = p
        .spec
        .security_context
        .as_ref()
        .and_then(|s| s.sysctls.as_deref())
        .unwrap_or_default()
        .iter()
        .map(|s| s.name.as_str())
        .filter(|n| !allowed(n))
        .collect();
    (!bad.is_empty())
        .then(|| finding("forbidden sysctls", bad.join(", ")))
        .flatten()
}

fn windows_host_process(p: &PodView<'_>) -> Option<Finding> {
    let host_process = |w: Option<&k8s_openapi::api::core::v1::WindowsSecurityContextOptions>| {
        w.and_then(|w| w.host_process) == Some(true)
    };
    let pod_bad = host_process(
        p.spec
            .security_context
            .as_ref()
            .and_then(|s| s.windows_options.as_ref()),
    );
    let bad = p.containers_where(|c| host_process(c.sc.and_then(|s| s.windows_options.as_ref())));
    let who = setters(pod_bad, &bad);
    if who.is_empty() {
        return None;
    }
    finding(
        "hostProcess",
        format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            who.join(" and ")
        ),
    )
}

fn allow_privilege_escalation(p: &PodView<'_>) -> Option<Finding> {
    if p.windows() {
        return None;
    }
    let bad =
        p.containers_where(|c| c.sc.and_then(|s| s.allow_privilege_escalation) != Some(false));
    if bad.is_empty() {
        return None;
    }
    finding(
        "allowPrivilegeEscalation != false",
        format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            named(&bad)
        ),
    )
}

fn capabilities_restricted(p: &PodView<'_>) -> Option<Finding> {
    if p.windows() {
        return None;
    }
    let missing_drop = p.containers_where(|c| {
        let drop =
            c.sc.and_then(|s| s.capabilities.as_ref())
                .and_then(|cap| cap.drop.as_deref())
                .unwrap_or_default();
        !drop.iter().any(|d| d == "ALL")
    });
    let mut caps = BTreeSet::new();
    let adding = p.containers_where(|c| {
        let extra: Vec<&String> = added(c)
            .iter()
            .filter(|a| *a != "NET_BIND_SERVICE")
            .collect();
        caps.extend(extra.iter().map(|s| s.to_string()));
        !extra.is_empty()
    });
    let mut details = Vec::new();
    if !missing_drop.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            named(&missing_drop)
        ));
    }
    if !adding.is_empty() {
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            named(&adding),
            quoted(&caps)
        ));
    }
    (!details.is_empty())
        .then(|| finding("unrestricted capabilities", details.join("; ")))
        .flatten()
}

fn restricted_volumes(p: &PodView<'_>) -> Option<Finding> {
    const ALLOWED: &[&str] = &[
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "image",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    let (mut bad, mut kinds) = (Vec::new(), BTreeSet::new());
    for v in p.spec.volumes.iter().flatten() {
        // The source is the volume's one field besides its name.
        let json = serde_json::to_value(v).unwrap_or_default();
        let source = json
            .as_object()
            .and_then(|o| o.keys().find(|k| *k != "name").cloned())
            .unwrap_or_else(|| "unknown".into());
        if !ALLOWED.contains(&source.as_str()) {
            bad.push(v.name.as_str());
            kinds.insert(source);
        }
    }
    if bad.is_empty() {
        return None;
    }
    finding(
        "restricted volume types",
        format!(
            "{} {} {} {} {}",
            plural("volume", "volumes", bad.len()),
            quoted(&bad),
            plural("uses", "use", bad.len()),
            plural(
                "restricted volume type",
                "restricted volume types",
                kinds.len()
            ),
            quoted(&kinds)
        ),
    )
}

fn run_as_non_root(p: &PodView<'_>) -> Option<Finding> {
    if p.user_namespaced() {
        return None;
    }
    let pod = p
        .spec
        .security_context
        .as_ref()
        .and_then(|s| s.run_as_non_root);
    let explicit = p.containers_where(|c| c.sc.and_then(|s| s.run_as_non_root) == Some(false));
    let who = setters(pod == Some(false), &explicit);
    if !who.is_empty() {
        return finding(
            "runAsNonRoot != true",
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                who.join(" and ")
            ),
        );
    }
    let implicit =
        p.containers_where(|c| c.sc.and_then(|s| s.run_as_non_root).is_none() && pod != Some(true));
    if implicit.is_empty() {
        return None;
    }
    finding(
        "runAsNonRoot != true",
        format!(
            "pod or {} must set securityContext.runAsNonRoot=true",
            named(&implicit)
        ),
    )
}

fn run_as_user(p: &PodView<'_>) -> Option<Finding> {
    if p.user_namespaced() {
        return None;
    }
    let pod = p.spec.security_context.as_ref().and_then(|s| s.run_as_user) == Some(0);
    let bad = p.containers_where(|c| c.sc.and_then(|s| s.run_as_user) == Some(0));
    let who = setters(pod, &bad);
    if who.is_empty() {
        return None;
    }
    finding(
        "runAsUser=0",
        format!("{} must not set runAsUser=0", who.join(" and ")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(level: Level, spec: serde_json::Value) -> String {
        let spec: PodSpec = serde_json::from_value(spec).expect("spec");
        let annotations = BTreeMap::new();
        let lv = LevelVersion {
            level,
            version: Version::LATEST,
        };
        describe(&evaluate(lv, &mut PodView::new(&annotations, &spec)))
    }

    #[test]
    fn baseline_names_host_access_as_upstream() {
        let spec = json!({
            "hostNetwork": true, "hostPID": true,
            "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
            "containers": [{"name": "c", "image": "x",
                "ports": [{"containerPort": 80, "hostPort": 80}, {"containerPort": 9, "hostPort": 8080}],
                "securityContext": {"privileged": true, "capabilities": {"add": ["NET_ADMIN", "CHOWN"]}}}]
        });
        assert_eq!(
            eval(Level::Baseline, spec),
            "non-default capabilities (container \"c\" must not include \"NET_ADMIN\" in \
             securityContext.capabilities.add), host namespaces (hostNetwork=true, hostPID=true), \
             hostPath volumes (volume \"root\"), hostPort (container \"c\" uses hostPorts 80, 8080), \
             privileged (container \"c\" must not set securityContext.privileged=true)"
        );
        let plain = json!({"containers": [{"name": "c", "image": "x"}]});
        assert_eq!(eval(Level::Baseline, plain.clone()), "");
        assert_eq!(eval(Level::Privileged, plain), "");
    }

    #[test]
    fn restricted_asks_for_the_hardened_settings() {
        let spec =
            json!({"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x"}]});
        assert_eq!(
            eval(Level::Restricted, spec),
            "allowPrivilegeEscalation != false (containers \"a\", \"b\" must set \
             securityContext.allowPrivilegeEscalation=false), unrestricted capabilities \
             (containers \"a\", \"b\" must set securityContext.capabilities.drop=[\"ALL\"]), \
             runAsNonRoot != true (pod or containers \"a\", \"b\" must set \
             securityContext.runAsNonRoot=true), seccompProfile (pod or containers \"a\", \"b\" \
             must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        );
        let hardened = json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [{"name": "h", "hostPath": {"path": "/x"}}],
            "containers": [{"name": "a", "image": "x", "securityContext": {
                "allowPrivilegeEscalation": false, "runAsUser": 0,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}]
        });
        assert_eq!(
            eval(Level::Restricted, hardened),
            "restricted volume types (volume \"h\" uses restricted volume type \"hostPath\"), \
             runAsUser=0 (container \"a\" must not set runAsUser=0)"
        );
    }

    #[test]
    fn older_versions_apply_older_checks() {
        let spec: PodSpec = serde_json::from_value(json!({
            "securityContext": {"sysctls": [{"name": "net.ipv4.tcp_rmem", "value": "1"}]},
            "containers": [{"name": "a", "image": "x",
                "readinessProbe": {"httpGet": {"host": "10.0.0.1", "port": 80}}}]
        }))
        .expect("spec");
        let annotations = BTreeMap::new();
        let at = |minor| {
            let lv = LevelVersion {
                level: Level::Baseline,
                version: Version::v1(minor),
            };
            describe(&evaluate(lv, &mut PodView::new(&annotations, &spec)))
        };
        assert_eq!(at(31), "forbidden sysctls (net.ipv4.tcp_rmem)");
        assert_eq!(
            at(34),
            "probe or lifecycle host (container \"a\" uses probe or lifecycle host \"10.0.0.1\")"
        );
    }
}

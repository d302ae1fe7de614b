//! The `RuntimeDefault` seccomp profile, as containerd's default: every syscall fails with
//! EPERM except an allow-list; the syscalls a capability unlocks are allowed only when the
//! container has that capability; `clone` may not create namespaces without CAP_SYS_ADMIN;
//! `socket` may not open AF_VSOCK; `personality` only with the harmless personas.

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

/// Allowed for every container: one name a line (`#` comments).
const ALLOWED: &str = include_str!("seccomp-allowed.txt");

/// Syscalls of this architecture only.
#[cfg(target_arch = "x86_64")]
const ARCH_ALLOWED: &[&str] = &["arch_prctl", "modify_ldt"];
#[cfg(target_arch = "aarch64")]
const ARCH_ALLOWED: &[&str] = &[
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "sync_file_range2",
    "breakpoint",
    "cacheflush",
    "set_tls",
];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const ARCH_ALLOWED: &[&str] = &[];

#[cfg(target_arch = "x86_64")]
const ARCHES: &[Arch] = &[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32];
#[cfg(target_arch = "aarch64")]
const ARCHES: &[Arch] = &[Arch::ScmpArchArm, Arch::ScmpArchAarch64];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const ARCHES: &[Arch] = &[Arch::ScmpArchNative];

/// What each capability unlocks.
const BY_CAPABILITY: &[(Capability, &[&str])] = &[
    (
        Capability::SysAdmin,
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    (Capability::SysBoot, &["reboot"]),
    (Capability::SysChroot, &["chroot"]),
    (
        Capability::SysModule,
        &["delete_module", "init_module", "finit_module"],
    ),
    (Capability::SysPacct, &["acct"]),
    (
        Capability::SysPtrace,
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    (Capability::SysRawio, &["iopl", "ioperm"]),
    (
        Capability::SysTime,
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    (Capability::SysTtyConfig, &["vhangup"]),
    (
        Capability::SysNice,
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    (Capability::Syslog, &["syslog"]),
    (Capability::Bpf, &["bpf"]),
    (Capability::Perfmon, &["perf_event_open"]),
];

/// CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET.
const CLONE_NAMESPACES: u64 = 0x7E02_0000;
const AF_VSOCK: u64 = 40;
const ENOSYS: u32 = 38;
/// Personas a container may switch to (PER_LINUX, PER_LINUX32, UNAME26 variants, query).
const PERSONAS: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

fn rule(names: &[&str], args: Option<Vec<LinuxSeccompArg>>) -> LinuxSyscall {
    let mut s = LinuxSyscall::default();
    s.set_names(names.iter().map(|n| n.to_string()).collect());
    s.set_action(LinuxSeccompAction::ScmpActAllow);
    s.set_args(args);
    s
}

fn arg(
    index: usize,
    value: u64,
    value_two: Option<u64>,
    op: LinuxSeccompOperator,
) -> LinuxSeccompArg {
    let b = LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(op);
    let b = match value_two {
        Some(v) => b.value_two(v),
        None => b,
    };
    // Every field is set above, so building cannot fail.
    b.build().unwrap_or_default()
}

/// The profile for a container holding `caps` (its bounding set).
pub fn runtime_default(caps: &[Capability]) -> LinuxSeccomp {
    let has = |c: Capability| caps.contains(&c);
    let allowed: Vec<&str> = ALLOWED
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let mut rules = vec![rule(&allowed, None)];
    if !ARCH_ALLOWED.is_empty() {
        rules.push(rule(ARCH_ALLOWED, None));
    }
    rules.push(rule(
        &["socket"],
        Some(vec![arg(
            0,
            AF_VSOCK,
            None,
            LinuxSeccompOperator::ScmpCmpNe,
        )]),
    ));
    for p in PERSONAS {
        rules.push(rule(
            &["personality"],
            Some(vec![arg(0, *p, None, LinuxSeccompOperator::ScmpCmpEq)]),
        ));
    }
    for (cap, names) in BY_CAPABILITY {
        if has(*cap) {
            rules.push(rule(names, None));
        }
    }
    if !has(Capability::SysAdmin) {
        // clone without namespace flags; clone3 (flags out of reach of seccomp) answers
        // ENOSYS so libc falls back to clone.
        rules.push(rule(
            &["clone"],
            Some(vec![arg(
                0,
                CLONE_NAMESPACES,
                Some(0),
                LinuxSeccompOperator::ScmpCmpMaskedEq,
            )]),
        ));
        let mut clone3 = rule(&["clone3"], None);
        clone3.set_action(LinuxSeccompAction::ScmpActErrno);
        clone3.set_errno_ret(Some(ENOSYS));
        rules.push(clone3);
    }
    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(LinuxSeccompAction::ScmpActErrno);
    profile.set_architectures(Some(ARCHES.to_vec()));
    profile.set_syscalls(Some(rules));
    profile
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_and_mounts_need_sys_admin() {
        let allowed = |p: &LinuxSeccomp, name: &str| {
            p.syscalls().iter().flatten().any(|s| {
                s.action() == LinuxSeccompAction::ScmpActAllow
                    && s.args().is_none()
                    && s.names().iter().any(|n| n == name)
            })
        };
        let plain = runtime_default(&[Capability::Kill]);
        assert_eq!(plain.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert!(allowed(&plain, "read"));
        for denied in [
            "mount", "unshare", "setns", "ptrace", "clone", "bpf", "reboot",
        ] {
            assert!(!allowed(&plain, denied), "{denied}");
        }
        let admin = runtime_default(&[Capability::SysAdmin]);
        assert!(allowed(&admin, "mount") && allowed(&admin, "clone"));
    }
}

//! A container's OCI runtime `config.json`, built with `oci-spec` from runc's defaults
//! (namespaces, masked paths) plus what the pod asks for: it joins the pod's network
//! namespace by path and keeps its own pid, mount, uts, ipc and cgroup namespaces; the
//! capability set, no-new-privileges, seccomp, read-only root, pids limit and privileged
//! mode (every capability and host device, nothing masked) come from the worker.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder,
    LinuxDeviceCgroupBuilder, LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxPidsBuilder, LinuxResourcesBuilder, LinuxSeccomp, MountBuilder, ProcessBuilder,
    RootBuilder, Spec, UserBuilder,
};

use super::RuntimeError;

pub struct BindMount {
    pub destination: String,
    pub source: PathBuf,
    pub read_only: bool,
}

/// Everything the bundle needs; the pod worker derives it from the Pod and the image.
pub struct ContainerSpec {
    pub hostname: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// Bounding, permitted and effective set (inheritable and ambient stay empty, as
    /// containerd: a non-root process gets none of them).
    pub capabilities: Vec<Capability>,
    pub no_new_privileges: bool,
    /// Every host device, nothing masked, /sys writable.
    pub privileged: bool,
    pub readonly_rootfs: bool,
    pub seccomp: Option<LinuxSeccomp>,
    pub pids_limit: Option<i64>,
    pub netns: PathBuf,
    pub mounts: Vec<BindMount>,
    pub cgroups_path: String,
    /// Bytes.
    pub memory_limit: Option<i64>,
    /// Millicores: becomes a CFS quota over a 100 ms period.
    pub cpu_limit_millis: Option<i64>,
    /// Millicores requested: CPU shares, as upstream (1024 per core, at least 2).
    pub cpu_request_millis: Option<i64>,
}

fn oci(e: oci_spec::OciSpecError) -> RuntimeError {
    RuntimeError::Bundle(e.to_string())
}

const CFS_PERIOD_US: u64 = 100_000;

pub fn build(c: &ContainerSpec, rootfs: &Path) -> Result<Spec, RuntimeError> {
    let mut spec = Spec::default();
    spec.set_hostname(Some(c.hostname.clone()));
    spec.set_root(Some(
        RootBuilder::default()
            .path(rootfs)
            .readonly(c.readonly_rootfs)
            .build()
            .map_err(oci)?,
    ));
    let caps: Capabilities = c.capabilities.iter().copied().collect();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .permitted(caps.clone())
        .effective(caps)
        .inheritable(Capabilities::new())
        .ambient(Capabilities::new())
        .build()
        .map_err(oci)?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .args(c.args.clone())
        .env(c.env.clone())
        .cwd(if c.cwd.is_empty() { "/" } else { &c.cwd })
        .user(
            UserBuilder::default()
                .uid(c.uid)
                .gid(c.gid)
                .additional_gids(c.additional_gids.clone())
                .build()
                .map_err(oci)?,
        )
        .capabilities(capabilities)
        .no_new_privileges(c.no_new_privileges)
        .build()
        .map_err(oci)?;
    spec.set_process(Some(process));

    let mut mounts = spec.mounts().clone().unwrap_or_default();
    if c.privileged {
        // As runc's privileged containers: sysfs and the cgroup tree writable.
        for m in mounts.iter_mut() {
            if let Some(opts) = m.options().clone() {
                m.set_options(Some(opts.into_iter().filter(|o| o != "ro").collect()));
            }
        }
    }
    for m in &c.mounts {
        let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
        options.push(if m.read_only { "ro" } else { "rw" }.to_string());
        mounts.push(
            MountBuilder::default()
                .destination(&m.destination)
                .typ("bind")
                .source(&m.source)
                .options(options)
                .build()
                .map_err(oci)?,
        );
    }
    spec.set_mounts(Some(mounts));

    let namespaces = [
        (LinuxNamespaceType::Pid, None),
        (LinuxNamespaceType::Ipc, None),
        (LinuxNamespaceType::Uts, None),
        (LinuxNamespaceType::Mount, None),
        (LinuxNamespaceType::Cgroup, None),
        (LinuxNamespaceType::Network, Some(c.netns.clone())),
    ]
    .into_iter()
    .map(|(typ, path)| {
        let b = LinuxNamespaceBuilder::default().typ(typ);
        match path {
            Some(p) => b.path(p).build(),
            None => b.build(),
        }
    })
    .collect::<Result<Vec<_>, _>>()
    .map_err(oci)?;

    let mut memory = LinuxMemoryBuilder::default();
    if let Some(limit) = c.memory_limit {
        memory = memory.limit(limit);
    }
    let mut cpu = LinuxCpuBuilder::default();
    if let Some(m) = c.cpu_limit_millis {
        cpu = cpu
            .quota((m * CFS_PERIOD_US as i64 / 1000).max(1000))
            .period(CFS_PERIOD_US);
    }
    if let Some(m) = c.cpu_request_millis {
        cpu = cpu.shares(((m * 1024) / 1000).max(2) as u64);
    }
    let mut resources = LinuxResourcesBuilder::default()
        .memory(memory.build().map_err(oci)?)
        .cpu(cpu.build().map_err(oci)?);
    if let Some(limit) = c.pids_limit {
        resources = resources.pids(
            LinuxPidsBuilder::default()
                .limit(limit)
                .build()
                .map_err(oci)?,
        );
    }
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(PathBuf::from(&c.cgroups_path));
    if c.privileged {
        let allow_all = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .access("rwm")
            .build()
            .map_err(oci)?;
        resources = resources.devices(vec![allow_all]);
        linux = linux.devices(super::devices::host_devices());
    } else {
        let defaults = oci_spec::runtime::Linux::default();
        linux = linux
            .masked_paths(defaults.masked_paths().clone().unwrap_or_default())
            .readonly_paths(defaults.readonly_paths().clone().unwrap_or_default());
    }
    if let Some(profile) = &c.seccomp {
        linux = linux.seccomp(profile.clone());
    }
    let linux = linux
        .resources(resources.build().map_err(oci)?)
        .build()
        .map_err(oci)?;
    spec.set_linux(Some(linux));
    Ok(spec)
}

pub fn write(bundle: &Path, c: &ContainerSpec) -> Result<(), RuntimeError> {
    std::fs::create_dir_all(bundle)?;
    let spec = build(c, &super::rootfs::rootfs(bundle))?;
    let tmp = bundle.join("config.json.tmp");
    spec.save(&tmp).map_err(oci)?;
    std::fs::rename(tmp, bundle.join("config.json"))?;
    Ok(())
}

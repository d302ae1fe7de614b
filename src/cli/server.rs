//! `skiff server`: one replica of the Raft store with its health and metrics endpoint.

use actix::Actor;
use config::Value;
use prometheus::Registry;
use tracing::info;
use tracing_subscriber::EnvFilter;

use super::{CliError, ServerArgs};
use crate::config::Config;
use crate::pki::client::{Access, Identity};
use crate::store::{datadir, NodeOptions, Replica};

/// Maps the flags onto config keys, so they are parsed and checked like any other layer.
fn flag_overrides(a: &ServerArgs) -> Result<Vec<(String, Value)>, CliError> {
    let mut out: Vec<(String, Value)> = Vec::new();
    let scalars = [
        ("node_name", &a.node_name),
        ("data_dir", &a.data_dir),
        ("cluster_name", &a.cluster_name),
        ("peer_listen_addr", &a.peer_listen_addr),
        ("peer_advertise_addr", &a.peer_advertise_addr),
        ("http_listen_addr", &a.http_listen_addr),
        ("api_addr", &a.api_addr),
        ("raft.tick_ms", &a.raft_tick_ms),
        ("raft.election_ticks", &a.raft_election_ticks),
        ("raft.heartbeat_ticks", &a.raft_heartbeat_ticks),
        ("raft.snapshot_interval", &a.raft_snapshot_interval),
    ];
    for (key, v) in scalars {
        if let Some(v) = v {
            out.push((key.into(), Value::from(v.as_str())));
        }
    }
    if let Some(members) = &a.initial_cluster {
        out.push(("initial_cluster".into(), Value::from(members.clone())));
    }
    out.extend(set_overrides(&a.set)?);
    Ok(out)
}

/// `--set KEY=VALUE` flags as config overrides.
fn set_overrides(set: &[String]) -> Result<Vec<(String, Value)>, CliError> {
    set.iter()
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| crate::config::ConfigError::Invalid {
                    key: kv.clone(),
                    reason: "--set takes KEY=VALUE".into(),
                })?;
            Ok((k.trim().into(), Value::from(v)))
        })
        .collect()
}

pub(crate) fn init_logging() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,raft=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn run(args: ServerArgs) -> Result<(), CliError> {
    let cfg = Config::load(args.config.as_deref(), &flag_overrides(&args)?)?;
    if args.print_config {
        let text = toml::to_string(&cfg).map_err(|e| std::io::Error::other(e.to_string()))?;
        print!("{text}");
        return Ok(());
    }
    init_logging();
    // Before anything starts: a configuration that does not parse stops the server here.
    let pod_security =
        crate::api::podsecurity::PodSecurityConfig::load(&cfg.api.admission_control_config_file)?;
    let members = cfg.members()?;
    let names: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
    let cluster_id = datadir::cluster_id(&cfg.cluster_name, &names);
    // validate() guarantees this node is a member.
    let me = members
        .iter()
        .find(|m| m.name == cfg.node_name)
        .ok_or_else(|| {
            CliError::Config(crate::config::ConfigError::Invalid {
                key: "initial_cluster".into(),
                reason: format!("does not name this node `{}`", cfg.node_name),
            })
        })?;
    datadir::prepare(&cfg.data_dir, cluster_id, me.id, &me.name)?;
    // Before the replica: its peer transport needs this server's certificate.
    let pki = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(crate::pki::ensure_server(&cfg))?;
    let opts = NodeOptions {
        id: me.id,
        cluster_id,
        peers: members
            .iter()
            .map(|m| (m.id, m.peer_addr.clone()))
            .collect(),
        peer_names: members.iter().map(|m| (m.id, m.name.clone())).collect(),
        data_dir: cfg.data_dir.clone(),
        tick: cfg.tick(),
        election_ticks: cfg.raft.election_ticks,
        heartbeat_ticks: cfg.raft.heartbeat_ticks,
        max_size_per_msg: cfg.raft.max_size_per_msg,
        max_inflight_msgs: cfg.raft.max_inflight_msgs,
        snapshot_interval: cfg.raft.snapshot_interval,
        snapshot_catchup_entries: cfg.raft.snapshot_catchup_entries,
        request_timeout: cfg.request_timeout(),
        watch_history: cfg.store.watch_history,
        tolerate_tail_corruption: cfg.store.tolerate_tail_corruption,
        encryption: Some(std::sync::Arc::new(
            crate::store::encryption::load_or_create(&cfg.encryption.keys, &cfg.data_dir).map_err(
                |e| CliError::Store {
                    dir: cfg.data_dir.display().to_string(),
                    source: e.into(),
                },
            )?,
        )),
        tls: crate::store::PeerTls::from_dir(&cfg.data_dir.join("pki")).map_err(|source| {
            CliError::Store {
                dir: cfg.data_dir.display().to_string(),
                source,
            }
        })?,
    };
    let network = crate::api::service_network(&cfg)?;
    let api_bootstrap = crate::api::Bootstrap::from_config(&cfg, network.clone())?;
    let registry = Registry::new();
    let replica = Replica::start(opts, cfg.peer_listen_addr, &registry).map_err(|source| {
        CliError::Store {
            dir: cfg.data_dir.display().to_string(),
            source,
        }
    })?;
    info!(
        node = %cfg.node_name,
        id = me.id,
        cluster = format!("{cluster_id:016x}"),
        peer = %cfg.peer_listen_addr,
        http = %cfg.http_listen_addr,
        api = %cfg.api_addr,
        "skiff server started"
    );
    let registry_for_node = registry.clone();
    let controller_access = Access {
        url: cfg.local_api_url(),
        ca_pem: pki.ca.cert_pem.clone(),
        identity: Identity::Token(
            pki.keys
                .user_token(crate::pki::CONTROLLER_USER, &[crate::api::auth::MASTERS])?,
        ),
    };
    let node_access = Access {
        url: cfg.local_api_url(),
        ca_pem: pki.ca.cert_pem.clone(),
        identity: Identity::Cert(pki.node.clone()),
    };
    let node_tls = crate::node::NodeTls {
        ca_pem: pki.ca.cert_pem.clone(),
        node: pki.node.clone(),
    };
    let metrics_security =
        crate::metrics::MetricsSecurity::new(&pki.ca.cert_pem, &pki.server, &cfg.local_api_url())?;
    let api_security = crate::api::Security {
        tls: crate::pki::tls::server_config(
            &pki.ca.cert_pem,
            &pki.server.cert,
            &pki.server.key,
            crate::pki::tls::ClientAuth::Optional,
        )?,
        keys: pki.keys.clone(),
        kubelet_tls: crate::api::KubeletTls::new(&pki.ca.cert_pem, &pki.server)?,
        join: crate::pki::join::JoinService {
            token: pki.token.clone(),
            ca: pki.ca,
            files: pki.files.clone(),
            api_names: crate::pki::api_names(&cfg),
        },
    };
    let sys = actix::System::new();
    let result = sys.block_on(async {
        let server = crate::metrics::serve(
            cfg.http_listen_addr,
            registry.clone(),
            replica.health(),
            metrics_security,
        )?;
        let handle = server.handle();
        actix::spawn(server);
        let api = crate::api::serve(
            cfg.api_addr,
            replica.client(),
            replica.health(),
            registry,
            cfg.controllers.default_toleration_seconds,
            network,
            &crate::config::ApiConfig {
                audit_log_path: cfg.audit_log_path().to_string_lossy().into_owned(),
                ..cfg.api.clone()
            },
            api_security,
            pod_security,
        )?;
        let api_handle = api.handle();
        actix::spawn(api);
        actix::spawn(crate::api::bootstrap(replica.client(), api_bootstrap));
        let _manager = cfg.controllers.enabled.then(|| {
            crate::controllers::ControllerManager::new(
                replica.health(),
                crate::controllers::ControllerOptions {
                    api: controller_access,
                    workers: cfg.controllers.workers,
                    resync: std::time::Duration::from_secs(cfg.controllers.resync_seconds),
                    node_grace: std::time::Duration::from_secs(
                        cfg.controllers.node_monitor_grace_seconds,
                    ),
                    node_cidrs: cfg.controllers.allocate_node_cidrs.then(|| {
                        // Validated at load.
                        let cluster = cfg.controllers_cluster_cidr().unwrap_or_default();
                        (cluster, cfg.controllers.node_cidr_mask_size)
                    }),
                    // Validated at load.
                    lb_pool: cfg.load_balancer_pool().unwrap_or_default(),
                    cronjob_clock_speed: cfg.controllers.cronjob_clock_speed,
                },
            )
            .start()
        });
        let _node = if cfg.node.enabled {
            Some(crate::node::start(&cfg, &node_access, &node_tls, &registry_for_node).await?)
        } else {
            None
        };
        let outcome = tokio::select! {
            code = replica.exited() => Err(CliError::ReplicaExited(code)),
            _ = shutdown_signal() => Ok(()),
        };
        api_handle.stop(false).await;
        handle.stop(true).await;
        outcome
    });
    info!("skiff server stopping");
    replica.stop();
    result
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `skiff agent`: only the node agent (and its metrics), against a server's API.
pub fn run_agent(args: super::AgentArgs) -> Result<(), CliError> {
    let mut flags: Vec<(String, Value)> = Vec::new();
    if let Some(n) = &args.node_name {
        flags.push(("node_name".into(), Value::from(n.as_str())));
    }
    if let Some(d) = &args.data_dir {
        flags.push(("data_dir".into(), Value::from(d.as_str())));
    }
    if let Some(t) = &args.token {
        flags.push(("security.token".into(), Value::from(t.as_str())));
    }
    flags.extend(set_overrides(&args.set)?);
    let cfg = Config::load(args.config.as_deref(), &flags)?;
    init_logging();
    let registry = Registry::new();
    let sys = actix::System::new();
    sys.block_on(async {
        let pki = crate::pki::ensure_agent(&cfg, &args.server).await?;
        let server = crate::metrics::serve(
            cfg.http_listen_addr,
            registry.clone(),
            std::sync::Arc::new(crate::store::Health::always_ready()),
            crate::metrics::MetricsSecurity::new(&pki.ca_pem, &pki.node, &args.server)?,
        )?;
        let handle = server.handle();
        actix::spawn(server);
        let access = Access {
            url: args.server.clone(),
            ca_pem: pki.ca_pem.clone(),
            identity: Identity::Cert(pki.node.clone()),
        };
        let node_tls = crate::node::NodeTls {
            ca_pem: pki.ca_pem.clone(),
            node: pki.node.clone(),
        };
        let _node = crate::node::start(&cfg, &access, &node_tls, &registry).await?;
        info!(node = %cfg.node_name, server = %args.server, "skiff agent started");
        shutdown_signal().await;
        handle.stop(true).await;
        Ok(())
    })
}

//! `skiff chart`: render Helm-format charts, and install, upgrade, uninstall and list
//! releases through a server's API.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use kube::Client;
use tracing_subscriber::EnvFilter;

use crate::chart::{self, Chart, ChartError, InstallOptions, Outcome, RenderOptions};

#[derive(Subcommand)]
pub enum ChartCommand {
    /// Render a chart and print its manifests as multi-document YAML.
    Template(TemplateArgs),
    /// Render a chart and create its objects as a new release.
    Install(InstallArgs),
    /// Render a chart again for an existing release: apply it, delete what it no longer has.
    Upgrade(UpgradeArgs),
    /// Delete every object of a release, and the release.
    Uninstall(UninstallArgs),
    /// List releases.
    #[command(alias = "ls")]
    List(ListArgs),
}

#[derive(Args)]
pub struct ValueArgs {
    /// Set a value, Helm syntax: `a.b=1,c[0]=x,d={p,q}` (repeatable; wins over -f).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// A YAML values file (repeatable; later files win).
    #[arg(short = 'f', long = "values", value_name = "FILE")]
    pub values: Vec<PathBuf>,
}

#[derive(Args)]
pub struct ApiArgs {
    /// API server URL (default: from KUBECONFIG or ~/.kube/config, whose CA and credentials
    /// are used either way).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Namespace of the release (default: the kubeconfig context's, else `default`).
    #[arg(short = 'n', long, value_name = "NS")]
    pub namespace: Option<String>,
}

#[derive(Args)]
pub struct TemplateArgs {
    /// The chart directory.
    pub dir: PathBuf,
    /// Release name the templates see as .Release.Name.
    #[arg(long, default_value = "release-name")]
    pub name: String,
    #[arg(short = 'n', long, value_name = "NS", default_value = "default")]
    pub namespace: String,
    #[command(flatten)]
    pub values: ValueArgs,
}

#[derive(Args)]
pub struct InstallArgs {
    /// The release name.
    pub name: String,
    /// The chart directory.
    pub dir: PathBuf,
    #[command(flatten)]
    pub values: ValueArgs,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Args)]
pub struct UpgradeArgs {
    #[command(flatten)]
    pub install: InstallArgs,
    /// Install the release if it does not exist.
    #[arg(short = 'i', long = "install")]
    pub install_missing: bool,
}

#[derive(Args)]
pub struct UninstallArgs {
    /// The release name.
    pub name: String,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Releases of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

/// Runs a chart command; returns the exit code (errors are one line on stderr).
pub fn run(command: ChartCommand) -> i32 {
    // kube-rs logs a failed request itself; the command's own one-line error says it.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,kube_client=off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    match dispatch(command) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("skiff: error: {}", e.to_string().replace('\n', " "));
            1
        }
    }
}

fn dispatch(command: ChartCommand) -> Result<(), ChartError> {
    match command {
        ChartCommand::Template(a) => template(a),
        ChartCommand::Install(a) => block_on(async {
            let (client, ns) = connect(&a.api).await?;
            let out = chart::install(&client, &options(&a, ns)).await?;
            print_outcome(&out);
            Ok(())
        }),
        ChartCommand::Upgrade(a) => block_on(async {
            let (client, ns) = connect(&a.install.api).await?;
            let out = chart::upgrade(&client, &options(&a.install, ns), a.install_missing).await?;
            print_outcome(&out);
            Ok(())
        }),
        ChartCommand::Uninstall(a) => block_on(async {
            let (client, ns) = connect(&a.api).await?;
            chart::uninstall(&client, &ns, &a.name).await?;
            println!("release \"{}\" uninstalled", a.name);
            Ok(())
        }),
        ChartCommand::List(a) => block_on(async {
            let (client, ns) = connect(&a.api).await?;
            let releases = chart::list(&client, (!a.all_namespaces).then_some(ns.as_str())).await?;
            print_list(&releases);
            Ok(())
        }),
    }
}

fn template(a: TemplateArgs) -> Result<(), ChartError> {
    chart::validate_release_name(&a.name)?;
    let c = Chart::load(&a.dir)?;
    let user = chart::values::user_values(&a.values.values, &a.values.set)?;
    let values = chart::values::coalesce(&c.values, &user);
    let rendered = chart::render(
        &c,
        &values,
        &RenderOptions {
            release_name: a.name,
            namespace: a.namespace,
            revision: 1,
            is_upgrade: false,
        },
    )?;
    print!("{}", chart::manifest_text(&rendered.manifests));
    Ok(())
}

fn options(a: &InstallArgs, namespace: String) -> InstallOptions {
    InstallOptions {
        release: a.name.clone(),
        namespace,
        chart_dir: a.dir.clone(),
        value_files: a.values.values.clone(),
        sets: a.values.set.clone(),
    }
}

fn block_on<F: std::future::Future<Output = Result<(), ChartError>>>(
    f: F,
) -> Result<(), ChartError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ChartError::Client(format!("cannot start the runtime: {e}")))?
        .block_on(f)
}

/// A client from the kubeconfig (its CA and credentials), at `--server` if given; and the
/// namespace to work in. Without a kubeconfig, `--server` alone gives an anonymous client.
async fn connect(api: &ApiArgs) -> Result<(Client, String), ChartError> {
    let inferred = kube::Config::infer().await;
    let config = match (&api.server, inferred) {
        (Some(url), inferred) => {
            let uri: http::Uri = url
                .parse()
                .map_err(|e| ChartError::Client(format!("--server {url:?}: {e}")))?;
            match inferred {
                Ok(mut c) => {
                    c.cluster_url = uri;
                    c
                }
                Err(_) => kube::Config::new(uri),
            }
        }
        (None, Ok(c)) => c,
        (None, Err(e)) => {
            return Err(ChartError::Client(format!(
                "no --server and no usable kubeconfig: {e}"
            )))
        }
    };
    let namespace = api
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(|e| ChartError::Client(e.to_string()))?;
    Ok((client, namespace))
}

fn print_outcome(out: &Outcome) {
    let r = &out.release;
    println!("NAME: {}", r.name);
    println!("LAST DEPLOYED: {}", r.updated);
    println!("NAMESPACE: {}", r.namespace);
    println!("STATUS: {}", r.status);
    println!("REVISION: {}", r.revision);
    println!("CHART: {}-{}", r.chart, r.chart_version);
    let notes = out.notes.trim();
    if !notes.is_empty() {
        println!("NOTES:\n{notes}");
    }
}

fn print_list(releases: &[chart::Release]) {
    let mut rows = vec![[
        "NAME".to_string(),
        "NAMESPACE".into(),
        "REVISION".into(),
        "UPDATED".into(),
        "STATUS".into(),
        "CHART".into(),
        "APP VERSION".into(),
    ]];
    for r in releases {
        rows.push([
            r.name.clone(),
            r.namespace.clone(),
            r.revision.to_string(),
            r.updated.clone(),
            r.status.clone(),
            format!("{}-{}", r.chart, r.chart_version),
            r.app_version.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|row| row[i].len()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
}

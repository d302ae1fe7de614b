//! `skiff image`: the node's image store from the command line (import tarballs, list).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::CliError;
use crate::config::Config;
use crate::node::image::{ImageRecord, ImageStore};
use crate::node::NodeDirs;

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Import the images of an OCI image layout tar or a `docker save` tar.
    Import(ImportArgs),
    /// List the images in the store.
    #[command(alias = "list")]
    Ls(StoreArgs),
}

/// Which store: the node's (from the config) or `--state-dir`.
#[derive(Args)]
pub struct StoreArgs {
    /// TOML config file of the node (default: /etc/skiff/config.toml if it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The node's state directory (the store is DIR/images), instead of the config's.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct ImportArgs {
    /// The tar file (optionally gzipped).
    #[arg(value_name = "FILE.tar")]
    pub file: PathBuf,
    /// Reference to give the image (required when the archive names it only by a tag).
    #[arg(long, value_name = "REF")]
    pub name: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
}

fn open(args: &StoreArgs) -> Result<ImageStore, CliError> {
    let (state, run, insecure) = match &args.state_dir {
        Some(dir) => (dir.clone(), PathBuf::new(), Vec::new()),
        None => {
            let cfg = Config::load(args.config.as_deref(), &[])?;
            (
                cfg.node_state_dir(),
                cfg.node.run_dir.clone(),
                cfg.node.insecure_registries.clone(),
            )
        }
    };
    let dir = NodeDirs { state, run }.images();
    ImageStore::open(&dir, insecure).map_err(|source| CliError::Image {
        context: format!("image store {}", dir.display()),
        source,
    })
}

/// `1234567` -> `1.2 MB` (decimal units, as registries and docker show sizes).
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1000.0;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

fn short_digest(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.get(..12).unwrap_or(hex)
}

/// The `skiff image ls` table.
pub fn table(records: &[ImageRecord]) -> String {
    let rows: Vec<[String; 3]> = records
        .iter()
        .map(|r| {
            [
                r.reference.clone(),
                short_digest(&r.digest).to_string(),
                human_size(r.size),
            ]
        })
        .collect();
    let header = ["REFERENCE", "DIGEST", "SIZE"].map(String::from);
    let width = |i: usize| {
        rows.iter()
            .chain([&header])
            .map(|r| r[i].len())
            .max()
            .unwrap_or(0)
    };
    let (w0, w1) = (width(0), width(1));
    let mut out = String::new();
    for r in [&header].into_iter().chain(&rows) {
        out.push_str(&format!("{:w0$}   {:w1$}   {}\n", r[0], r[1], r[2]));
    }
    out
}

pub fn run(command: ImageCommand) -> Result<(), CliError> {
    match command {
        ImageCommand::Import(args) => {
            let store = open(&args.store)?;
            let records = store
                .import(&args.file, args.name.as_deref())
                .map_err(|source| CliError::Image {
                    context: format!("importing {}", args.file.display()),
                    source,
                })?;
            for r in records {
                println!("imported {} {}", r.reference, r.digest);
            }
            Ok(())
        }
        ImageCommand::Ls(args) => {
            print!("{}", table(&open(&args)?.list()));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(1_035_060), "1.0 MB");
        assert_eq!(human_size(2_500_000_000), "2.5 GB");
    }

    #[test]
    fn ls_table() {
        let r = ImageRecord {
            reference: "docker.io/library/busybox:latest".into(),
            digest: "sha256:9271672a6ef1fbbe6b21dd682604fd0f2ce88ec6fbe8c2da36dc6d0b2837bb37"
                .into(),
            layers: Vec::new(),
            size: 1_035_060,
            config: Default::default(),
        };
        let t = table(&[r]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("REFERENCE "), "{t}");
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            [
                "docker.io/library/busybox:latest",
                "9271672a6ef1",
                "1.0",
                "MB"
            ]
        );
    }
}

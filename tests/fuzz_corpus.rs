//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the same entry points
//! the cargo-fuzz targets call (`skiff::fuzz_targets`), in an ordinary uninstrumented build:
//! every input the fuzzers found interesting, and every crash they found once, must still
//! return. `make fuzz` grows the corpus; this keeps it honest without building the fuzzers.

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

use skiff::fuzz_targets::TARGETS;

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus")
}

fn replay(target: &str) {
    let (_, run) = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no fuzz target {target} in skiff::fuzz_targets::TARGETS"));
    let dir = corpus_root().join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading the corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "the corpus {} is empty: it must hold the seeds and the fuzzers' finds",
        dir.display()
    );
    let mut panicked = Vec::new();
    for file in &files {
        let data = fs::read(file).expect("corpus file");
        if panic::catch_unwind(|| run(&data)).is_err() {
            panicked.push(file.display().to_string());
        }
    }
    assert!(
        panicked.is_empty(),
        "{target}: {} of {} corpus inputs panicked: {panicked:#?}",
        panicked.len(),
        files.len()
    );
}

#[test]
fn every_target_has_a_corpus_and_every_corpus_a_target() {
    let mut dirs: Vec<String> = fs::read_dir(corpus_root())
        .expect("fuzz/corpus")
        .map(|e| e.expect("entry"))
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut targets: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    targets.sort();
    assert_eq!(dirs, targets);
    for t in &targets {
        let source =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fuzz/fuzz_targets/{t}.rs"));
        assert!(
            source.is_file(),
            "no cargo-fuzz target {}",
            source.display()
        );
    }
}

#[test]
fn body_json() {
    replay("body_json");
}

#[test]
fn body_yaml() {
    replay("body_yaml");
}

#[test]
fn body_protobuf() {
    replay("body_protobuf");
}

#[test]
fn patch_json() {
    replay("patch_json");
}

#[test]
fn patch_merge() {
    replay("patch_merge");
}

#[test]
fn patch_strategic() {
    replay("patch_strategic");
}

#[test]
fn label_selector() {
    replay("label_selector");
}

#[test]
fn field_selector() {
    replay("field_selector");
}

#[test]
fn raft_peer_frame() {
    replay("raft_peer_frame");
}

#[test]
fn admission_config() {
    replay("admission_config");
}

#[test]
fn audit_policy() {
    replay("audit_policy");
}

#[test]
fn pod_security() {
    replay("pod_security");
}

#[test]
fn cluster_token() {
    replay("cluster_token");
}

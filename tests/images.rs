//! The image store against a real registry (Debian's `docker-registry`, fed by `skopeo` with a
//! busybox image built from Debian's busybox-static), and `skiff image import` / `ls` through
//! the real binary. Skipped with a printed reason when the tools are missing, unless
//! `SKIFF_E2E_REQUIRED=1`.

#[path = "common/registry.rs"]
#[allow(dead_code)]
mod registry;

use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use registry::{build_busybox, busybox, busybox_layout, Registry};
use skiff::node::image::{ImageError, ImageStore};

const BIN: &str = env!("CARGO_BIN_EXE_skiff");

fn tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn skiff<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run skiff")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `skiff image ARGS --state-dir STATE` and expects success.
fn image_ok(state: &Path, args: &[&OsStr]) -> String {
    let out = skiff(
        [OsStr::new("image")]
            .iter()
            .chain(args)
            .chain(&[OsStr::new("--state-dir"), state.as_os_str()]),
    );
    assert!(
        out.status.success(),
        "skiff image {args:?} failed: {}",
        stderr(&out)
    );
    stdout(&out)
}

/// Runs `skiff image ARGS --state-dir STATE`, expects failure, returns the error line.
fn image_err(state: &Path, args: &[&OsStr]) -> String {
    let out = skiff(
        [OsStr::new("image")]
            .iter()
            .chain(args)
            .chain(&[OsStr::new("--state-dir"), state.as_os_str()]),
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "skiff image {args:?} should fail"
    );
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one error line, got: {err}");
    assert!(err.starts_with("skiff: error: "), "{err}");
    err
}

/// Flips a byte in the middle of the largest file of a tar (a layer).
fn corrupt_largest(tar_path: &Path, out: &Path) {
    let mut bytes = std::fs::read(tar_path).expect("read tar");
    let (pos, size) = {
        let mut archive = tar::Archive::new(&bytes[..]);
        archive
            .entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                (e.raw_file_position(), e.size())
            })
            .max_by_key(|(_, size)| *size)
            .expect("a file")
    };
    assert!(size > 1000, "largest entry is {size} bytes");
    bytes[(pos + size / 2) as usize] ^= 0xff;
    std::fs::write(out, bytes).expect("write corrupted tar");
}

fn docker_archive(out: &Path, reference: &str) {
    let res = Command::new("skopeo")
        .args(["copy", "--insecure-policy"])
        .arg(format!("oci:{}:latest", busybox().layout.display()))
        .arg(format!("docker-archive:{}:{reference}", out.display()))
        .output()
        .expect("run skopeo");
    assert!(res.status.success(), "skopeo: {}", stderr(&res));
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_from_registry_unpacks_and_reuses_blobs() {
    if !registry::available() {
        return;
    }
    tls();
    let reg = Registry::start();
    let reference = reg.push_busybox("busybox:latest");
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        std::sync::Arc::new(ImageStore::open(dir.path(), vec![reg.host()]).expect("open store"));

    let rec = store.pull(&reference).await.expect("pull");
    assert_eq!(rec.reference, reference);
    assert_eq!(rec.digest, reg.manifest_digest("busybox", "latest"));
    assert_eq!(
        rec.digest,
        busybox().digest,
        "the registry kept the manifest"
    );
    assert_eq!(rec.config.cmd, ["sh"]);
    assert!(rec.config.env.iter().any(|e| e.starts_with("PATH=")));
    assert_eq!(rec.layers.len(), 1);

    let lower = store.lower_dirs(&rec).expect("lower dirs");
    assert_eq!(lower.len(), 1);
    let bb = lower[0].join("bin/busybox");
    let meta = std::fs::metadata(&bb).expect("bin/busybox unpacked");
    assert!(meta.is_file() && meta.permissions().mode() & 0o111 != 0);
    assert_eq!(
        std::fs::read_link(lower[0].join("bin/sh")).expect("bin/sh symlink"),
        PathBuf::from("busybox")
    );
    assert!(std::fs::read_to_string(lower[0].join("etc/passwd"))
        .expect("passwd")
        .starts_with("root:x:0:0:"));
    assert_eq!(store.get(&reference), Some(rec.clone()));

    // The one layer blob; the registry stops serving it, so a second pull succeeds only by
    // reusing the store's copy.
    let blobs = dir.path().join("blobs/sha256");
    let names = files(&blobs);
    assert_eq!(names.len(), 1, "{names:?}");
    let blob = blobs.join(&names[0]);
    let inode = std::fs::metadata(&blob).expect("blob").ino();
    assert_eq!(
        reg.delete_blob("busybox", &format!("sha256:{}", names[0])),
        202
    );
    let other = tempfile::tempdir().expect("tempdir");
    let fresh =
        std::sync::Arc::new(ImageStore::open(other.path(), vec![reg.host()]).expect("open store"));
    assert!(
        fresh.pull(&reference).await.is_err(),
        "the registry still serves the deleted blob"
    );

    let again = store.pull(&reference).await.expect("second pull");
    assert_eq!(again, rec);
    assert_eq!(files(&blobs), names);
    assert_eq!(std::fs::metadata(&blob).expect("blob").ino(), inode);

    // The record survives a restart.
    drop(store);
    let reopened = ImageStore::open(dir.path(), Vec::new()).expect("reopen");
    assert_eq!(reopened.get(&reference), Some(rec));
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_image_is_not_found_with_the_registry_message() {
    if !registry::available() {
        return;
    }
    tls();
    let reg = Registry::start();
    reg.push_busybox("busybox:latest");
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        std::sync::Arc::new(ImageStore::open(dir.path(), vec![reg.host()]).expect("open store"));
    for missing in ["busybox:nope", "nothere:latest"] {
        let reference = format!("{}/{missing}", reg.host());
        match store.pull(&reference).await {
            Err(ImageError::NotFound(msg)) => {
                assert!(msg.contains("manifest unknown"), "{msg}");
                assert!(msg.contains(&reference), "{msg}");
            }
            other => panic!("{reference}: expected NotFound, got {other:?}"),
        }
    }
    assert!(store.list().is_empty());
    assert!(files(&dir.path().join("blobs/sha256")).is_empty());
}

#[test]
fn cli_imports_oci_layout_and_docker_archive() {
    if !registry::available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");

    // An OCI layout whose index names the image fully.
    let named = build_busybox(&tmp.path().join("named"), "example.com/tools/busybox:1.35");
    assert_eq!(
        named.digest,
        busybox().digest,
        "the name is not in the manifest"
    );
    let out = image_ok(&state, &[OsStr::new("import"), named.tar.as_os_str()]);
    assert_eq!(
        out.trim(),
        format!("imported example.com/tools/busybox:1.35 {}", named.digest)
    );

    // A docker-archive (docker save format) of the same image.
    let archive = tmp.path().join("archive.tar");
    docker_archive(&archive, "busybox:archived");
    let out = image_ok(&state, &[OsStr::new("import"), archive.as_os_str()]);
    let (reference, digest) = out
        .trim()
        .strip_prefix("imported ")
        .and_then(|l| l.split_once(' '))
        .unwrap_or_else(|| panic!("import output: {out}"));
    assert_eq!(reference, "docker.io/library/busybox:archived");
    assert!(
        digest.starts_with("sha256:") && digest != named.digest,
        "{digest}"
    );
    // The ID of a docker-archive image is derived from its contents: the same every time.
    let again = image_ok(&state, &[OsStr::new("import"), archive.as_os_str()]);
    assert_eq!(again, out);

    // An index naming the image only by a tag needs --name.
    let layout = busybox_layout();
    let err = image_err(&state, &[OsStr::new("import"), layout.as_os_str()]);
    assert!(
        err.contains("\"latest\"") && err.contains("--name"),
        "{err}"
    );
    let out = image_ok(
        &state,
        &[
            OsStr::new("import"),
            layout.as_os_str(),
            OsStr::new("--name"),
            OsStr::new("local/busybox:bare"),
        ],
    );
    assert_eq!(
        out.trim(),
        format!("imported docker.io/local/busybox:bare {}", busybox().digest)
    );

    let ls = image_ok(&state, &[OsStr::new("ls")]);
    let rows: Vec<Vec<&str>> = ls.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["REFERENCE", "DIGEST", "SIZE"], "{ls}");
    let row = |r: &str| {
        rows.iter()
            .find(|row| row[0] == r)
            .unwrap_or_else(|| panic!("{r} not listed:\n{ls}"))
            .clone()
    };
    assert_eq!(
        row("example.com/tools/busybox:1.35")[1],
        &named.digest[7..19]
    );
    assert_eq!(row("docker.io/library/busybox:archived")[1], &digest[7..19]);
    assert_eq!(
        row("docker.io/local/busybox:bare")[1],
        &busybox().digest[7..19]
    );
    assert_eq!(rows.len(), 4, "{ls}");
    // One unpacked layer shared by all three.
    assert_eq!(files(&state.join("images/layers")).len(), 1);
    assert!(files(&state.join("images/tmp")).is_empty(), "staging left");

    // Without --state-dir the store is the config's node state dir (<data_dir>/node/images).
    let config = tmp.path().join("config.toml");
    let data = tmp.path().join("data");
    std::fs::write(&config, format!("data_dir = {:?}\n", data)).expect("config");
    let out = skiff([
        OsStr::new("image"),
        OsStr::new("import"),
        named.tar.as_os_str(),
        OsStr::new("--config"),
        config.as_os_str(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = skiff([
        OsStr::new("image"),
        OsStr::new("ls"),
        OsStr::new("--config"),
        config.as_os_str(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 2, "{}", stdout(&out));
    assert!(stdout(&out).contains("example.com/tools/busybox:1.35"));
    assert!(data.join("node/images/refs.json").is_file());

    // Bad input: one line, non-zero exit.
    let err = image_err(
        &state,
        &[
            OsStr::new("import"),
            tmp.path().join("nope.tar").as_os_str(),
        ],
    );
    assert!(err.contains("nope.tar"), "{err}");
    let err = image_err(&state, &[OsStr::new("import"), config.as_os_str()]);
    assert!(err.contains("config.toml"), "{err}");
}

#[test]
fn corrupted_archive_is_refused_and_the_store_is_unchanged() {
    if !registry::available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let bad_oci = tmp.path().join("bad-oci.tar");
    corrupt_largest(&busybox_layout(), &bad_oci);
    let archive = tmp.path().join("archive.tar");
    docker_archive(&archive, "busybox:archived");
    let bad_docker = tmp.path().join("bad-docker.tar");
    corrupt_largest(&archive, &bad_docker);
    let name = [OsStr::new("--name"), OsStr::new("example.com/busybox:bad")];

    // Into an empty store: nothing at all is left behind.
    let empty = tmp.path().join("empty");
    for bad in [&bad_oci, &bad_docker] {
        let mut args = vec![OsStr::new("import"), bad.as_os_str()];
        args.extend(name);
        let err = image_err(&empty, &args);
        assert!(err.contains("digest mismatch"), "{err}");
    }
    let images = empty.join("images");
    assert!(!images.join("refs.json").exists());
    assert!(files(&images.join("blobs/sha256")).is_empty());
    assert!(files(&images.join("layers")).is_empty());
    assert!(files(&images.join("tmp")).is_empty());

    // Into a store holding the image: its references stay as they were.
    let state = tmp.path().join("state");
    let layout = busybox_layout();
    image_ok(
        &state,
        &[
            OsStr::new("import"),
            layout.as_os_str(),
            OsStr::new("--name"),
            OsStr::new("example.com/busybox:good"),
        ],
    );
    let refs = std::fs::read(state.join("images/refs.json")).expect("refs.json");
    let ls = image_ok(&state, &[OsStr::new("ls")]);
    for bad in [&bad_oci, &bad_docker] {
        let mut args = vec![OsStr::new("import"), bad.as_os_str()];
        args.extend(name);
        let err = image_err(&state, &args);
        assert!(err.contains("digest mismatch"), "{err}");
    }
    assert_eq!(
        std::fs::read(state.join("images/refs.json")).expect("refs.json"),
        refs
    );
    assert_eq!(image_ok(&state, &[OsStr::new("ls")]), ls);
    assert!(files(&state.join("images/tmp")).is_empty());
}

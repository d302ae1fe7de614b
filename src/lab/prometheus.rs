//! `skiff lab up --prometheus`: Debian's Prometheus in node 1's namespace, finding its targets
//! through the API server's HTTP service discovery (`/skiff/v1/prometheus-sd`), so it scrapes
//! pods on every node across the overlay.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::netns;
use super::plan::{node_ns, API_PORT, PROMETHEUS_PORT};
use super::status::http_ok;
use super::LabError;

pub fn config_text() -> String {
    [
        "global:",
        "  scrape_interval: 5s",
        "  scrape_timeout: 4s",
        "  evaluation_interval: 5s",
        "scrape_configs:",
        "- job_name: skiff",
        "  http_sd_configs:",
        &format!("  - url: http://127.0.0.1:{API_PORT}/skiff/v1/prometheus-sd"),
        "    refresh_interval: 5s",
        "",
    ]
    .join("\n")
}

/// Starts Prometheus; returns its pid.
pub fn start(dir: &Path) -> Result<u32, LabError> {
    let root = dir.join("prometheus");
    std::fs::create_dir_all(root.join("data"))?;
    let cfg = root.join("prometheus.yml");
    std::fs::write(&cfg, config_text())?;
    let mut cmd = Command::new("prometheus");
    cmd.arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            root.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}"))
        .arg("--storage.tsdb.retention.time=1d");
    netns::spawn(Some(&node_ns(1)), cmd, &root.join("prometheus.log"))
}

/// Prometheus answers `/-/ready` through the forwarder.
pub fn wait_ready(timeout: Duration) -> Result<(), LabError> {
    let deadline = Instant::now() + timeout;
    loop {
        if http_ok(PROMETHEUS_PORT, "/-/ready") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(LabError::NotReady(format!(
                "Prometheus not ready on 127.0.0.1:{PROMETHEUS_PORT} after {} s",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn config_points_http_sd_at_the_local_api() {
        let v: serde_json::Value = yaml_serde::from_str(&super::config_text()).expect("yaml");
        let sd = &v["scrape_configs"][0]["http_sd_configs"][0];
        assert_eq!(sd["url"], "http://127.0.0.1:6443/skiff/v1/prometheus-sd");
        assert_eq!(v["global"]["scrape_interval"], "5s");
    }
}

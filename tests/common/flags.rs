//! `--name VALUE` options of the benchmark harnesses (`cargo bench --bench X -- --name 5`).

/// The value after `name` on the command line, else `default` (also when it does not parse).
pub fn flag<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

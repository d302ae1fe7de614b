//! Resource quantities (`100m`, `0.5`, `128Mi`, `1G`).

/// Parses a Kubernetes quantity, scaled by `scale` (1000 for CPU in millicores).
pub fn parse(q: &str, scale: f64) -> Option<i64> {
    let q = q.trim();
    let split = q.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let value: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        s if s.starts_with('e') || s.starts_with('E') => 10f64.powf(s[1..].parse().ok()?),
        _ => return None,
    };
    Some((value * mult * scale).ceil() as i64)
}

//! concurrencyPolicy: what to do when a run is due while earlier Jobs are still active.

#[derive(Debug, PartialEq)]
pub enum Action {
    Run,
    /// Forbid: skip this run (it stays missed, so it runs once the active Job ends).
    Skip,
    /// Replace: delete the active Jobs, then run.
    Replace,
}

pub fn decide(policy: Option<&str>, active: usize) -> Action {
    match (policy, active) {
        (_, 0) => Action::Run,
        (Some("Forbid"), _) => Action::Skip,
        (Some("Replace"), _) => Action::Replace,
        _ => Action::Run,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        assert_eq!(decide(Some("Forbid"), 0), Action::Run);
        assert_eq!(decide(Some("Forbid"), 1), Action::Skip);
        assert_eq!(decide(Some("Replace"), 2), Action::Replace);
        assert_eq!(decide(Some("Allow"), 3), Action::Run);
        assert_eq!(decide(None, 3), Action::Run);
    }
}

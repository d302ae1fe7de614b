//! Errors of the store, typed so callers (the API server) can map them to Kubernetes statuses.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    #[error("key {key} already exists")]
    AlreadyExists { key: String },
    #[error("key {key} not found")]
    NotFound { key: String },
    #[error("conflict on {key}: expected mod revision {expected}, found {actual}")]
    Conflict {
        key: String,
        expected: u64,
        actual: u64,
    },
    /// The requested revision is older than the retained history (Kubernetes: 410 Gone).
    #[error("revision {requested} has been compacted (history starts after {compacted})")]
    Expired { requested: u64, compacted: u64 },
    /// A read at a revision this replica has not reached (Kubernetes: 504, ResourceVersionTooLarge).
    #[error("revision {requested} is newer than the store's {current}")]
    FutureRevision { requested: u64, current: u64 },
    /// The proposal was lost in a leader change; it was not applied and may be retried.
    #[error("proposal dropped: {0}")]
    ProposalDropped(String),
    /// No leader, no quorum, or no answer within the request timeout; may be retried.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The replica that took the request has stopped; retry on another one.
    #[error("replica stopped")]
    Stopped,
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("storage failure: {0}")]
    Storage(String),
    /// A stored value could not be encrypted or decrypted (unknown key, failed
    /// authentication): an internal error, never the value in the clear.
    #[error("encryption at rest: {0}")]
    Transformation(String),
}

impl StoreError {
    /// True when the request was not applied and sending it again is safe.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::ProposalDropped(_) | StoreError::Unavailable(_) | StoreError::Stopped
        )
    }
}

impl From<raft_engine::Error> for StoreError {
    fn from(e: raft_engine::Error) -> Self {
        StoreError::Storage(format!("raft-engine: {e}"))
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Storage(e.to_string())
    }
}

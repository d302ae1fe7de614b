//! The controller runtime: informers, work queue, controller actor, events.

mod controller;
mod events;
mod informer;
mod queue;

pub use controller::{key, split, Controller, ReconcileError, ReconcileResult, Reconciler};
pub use events::Recorder;
pub use informer::{Change, Informer};

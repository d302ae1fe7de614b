//! Sends raft-rs' slog records to `tracing`, so `RUST_LOG` filters them like everything else.

use slog::{Drain, Level, Logger, OwnedKVList, Record, KV};

struct TracingDrain;

/// Collects a record's key-value pairs (raft puts the node id and term there).
struct Fields(String);

impl slog::Serializer for Fields {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments) -> slog::Result {
        self.0.push_str(&format!(" {key}={val}"));
        Ok(())
    }
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        let mut fields = Fields(String::new());
        let _ = record.kv().serialize(record, &mut fields);
        let _ = values.serialize(record, &mut fields);
        let msg = record.msg();
        let f = fields.0;
        match record.level() {
            Level::Critical | Level::Error => tracing::error!(target: "raft", "{msg}{f}"),
            Level::Warning => tracing::warn!(target: "raft", "{msg}{f}"),
            Level::Info => tracing::info!(target: "raft", "{msg}{f}"),
            Level::Debug => tracing::debug!(target: "raft", "{msg}{f}"),
            Level::Trace => tracing::trace!(target: "raft", "{msg}{f}"),
        }
        Ok(())
    }
}

pub fn raft_logger(node_id: u64) -> Logger {
    Logger::root(TracingDrain.fuse(), slog::o!("raft_id" => node_id))
}

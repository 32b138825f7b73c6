//! Where records go. For now, stdout: one JSON record per line. (NATS
//! JetStream, the journal and files arrive with their own issue.)

pub mod file;
pub mod nats;
pub mod stdout;

pub use stdout::{SinkError, StdoutSink};

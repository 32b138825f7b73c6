//! debugmon agent library. Data flows one way:
//!
//! ```text
//! ebpf (load, attach) -> ring buffer -> event::decode -> process::table
//!     -> record (JSON) -> sink (stdout)
//! ```
//!
//! - [`ebpf`]: kernel layouts from BTF and tracefs, loading, attaching
//! - [`event`]: wire bytes to owned events (pure)
//! - [`process`]: the process table, seeded from /proc
//! - [`record`]: the JSON records of DESIGN.md
//! - [`pipeline`]: decode -> table -> record, I/O free
//! - [`sink`]: where records go
//! - [`agent`]: the async driver and shutdown
//! - [`seal`], [`canonical`]: seq, hash chain and signature of each record
//! - [`redact`]: secrets out of argv and env strings before sealing
//! - [`spool`]: durable queue of sealed records until JetStream acks them
//! - [`verify`], [`tail`]: the `debugmon verify` and `debugmon tail` commands
//! - [`host`]: host identity and clocks

pub mod agent;
pub mod canonical;
pub mod ebpf;
pub mod event;
pub mod host;
pub mod pipeline;
pub mod process;
pub mod record;
pub mod redact;
pub mod seal;
pub mod sink;
pub mod spool;
pub mod tail;
pub mod telemetry;
pub mod verify;

pub use agent::{AgentError, Config, RunSummary, run};

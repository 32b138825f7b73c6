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
//! - [`host`]: host identity and clocks
//! - [`policy`]: policy files, compiled rules, decisions
//! - [`grants`]: time-boxed grants and the control socket

pub mod agent;
pub mod ebpf;
pub mod event;
pub mod grants;
pub mod host;
pub mod pipeline;
pub mod policy;
pub mod process;
pub mod record;
pub mod sink;
pub mod telemetry;

pub use agent::{AgentError, Config, RunSummary, run};

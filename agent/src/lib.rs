//! debugmon agent library. Data flows one way:
//!
//! ```text
//! ebpf (load, attach) -> ring buffer -> event::decode -> process::table
//!     -> enrich (who, where) -> record (JSON) -> sink (stdout)
//! ```
//!
//! - [`ebpf`]: kernel layouts from BTF and tracefs, loading, attaching
//! - [`event`]: wire bytes to owned events (pure)
//! - [`process`]: the process table, seeded from /proc
//! - [`enrich`]: user names, terminal, SSH origin, unit, container, target
//! - [`record`]: the JSON records of DESIGN.md; [`names`]: kernel numbers to names
//! - [`pipeline`]: decode -> table -> record, I/O free
//! - [`sink`]: where records go
//! - [`enforce`]: enforcement mechanism and the kernel's decision maps
//! - [`agent`]: the async driver and shutdown
//! - [`seal`], [`canonical`]: seq, hash chain and signature of each record
//! - [`redact`]: secrets out of argv and env strings before sealing
//! - [`spool`]: durable queue of sealed records until JetStream acks them
//! - [`verify`], [`tail`]: the `debugmon verify` and `debugmon tail` commands
//! - [`host`]: host identity and clocks
//! - [`policy`]: policy files, compiled rules, decisions; [`decide`]: decisions on records
//! - [`grants`]: time-boxed grants and the control socket
//! - [`commands`]: `config check`, `status`, `run`'s settings
//! - [`config`]: the config file, environment and flag overrides, validation
//! - [`metrics`]: counters and gauges, Prometheus text; [`http`]: `/metrics` and `/status`
//! - [`status`]: `debugmon status` report and client; [`notify`]: systemd notifications

pub mod agent;
pub mod canonical;
pub mod canonical_writer;
pub mod cli_governance;
pub mod commands;
pub mod config;
pub mod decide;
pub mod ebpf;
pub mod enforce;
pub mod enrich;
pub mod event;
#[cfg(test)]
mod golden_tests;
pub mod governance;
pub mod grants;
pub mod host;
pub mod http;
pub mod metrics;
pub mod names;
pub mod notify;
pub mod pipeline;
pub mod policy;
pub mod process;
pub mod reader;
pub mod record;
pub mod redact;
pub mod seal;
pub mod sink;
pub mod spool;
pub mod status;
pub mod tail;
pub mod telemetry;
pub mod verify;

pub use agent::{AgentError, Config, RunSummary, run};

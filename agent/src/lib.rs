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
//! - [`agent`]: the async driver and shutdown
//! - [`commands`]: `config check`, `status`, `run`'s settings
//! - [`config`]: the config file, environment and flag overrides, validation
//! - [`host`]: host identity and clocks
//! - [`metrics`]: counters and gauges, Prometheus text; [`http`]: `/metrics` and `/status`
//! - [`status`]: `debugmon status` report and client; [`notify`]: systemd notifications

pub mod agent;
pub mod commands;
pub mod config;
pub mod ebpf;
pub mod enrich;
pub mod event;
pub mod host;
pub mod http;
pub mod metrics;
pub mod names;
pub mod notify;
pub mod pipeline;
pub mod process;
pub mod record;
pub mod sink;
pub mod status;
pub mod telemetry;

pub use agent::{AgentError, Config, RunSummary, run};

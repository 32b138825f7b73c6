//! debugmon agent library. The path of one event is the layout
//! (docs/architecture.md draws it):
//!
//! ```text
//! ebpf (load, attach) -> ring buffer -> event (decode) -> process (table)
//!     -> enrich (who, where) -> decide (verdict) -> record (build, seal)
//!     -> spool -> sink (stdout, file, journal, NATS)
//! ```
//!
//! Each stage only uses the ones before it; [`runtime`] drives them.
//!
//! - [`ebpf`]: kernel layouts from BTF and tracefs, loading and attaching
//!   the programs, the kernel's decision maps
//! - [`event`]: ring buffer bytes to owned events (pure), and record kinds
//! - [`process`]: the process table, seeded from /proc
//! - [`enrich`]: user names, terminal, SSH origin, unit, container, target
//! - [`decide`]: the one place that says allow, alert or deny, and whether
//!   and how it was enforced
//! - [`record`]: records built, redacted, canonically encoded, sealed and
//!   verified
//! - [`spool`]: durable queue of sealed records until they are delivered
//! - [`sink`]: the delivery stage and where records go
//!
//! Beside the path:
//!
//! - [`runtime`]: the running agent (start-up, ring reader, pipeline,
//!   governance, approvals on NATS, shutdown)
//! - [`policy`]: policy files, compiled rules, rulings, what grants cover
//!   and the kernel's part of a policy
//! - [`grants`]: the grants store, the control socket, and grant requests
//!   and their signed approvals
//! - [`review`]: records read back for an auditor, verified as they are
//!   read: filters, sessions, summaries, tables
//! - [`inventory`]: the host's debug exposure now (debuggers installed,
//!   traced processes, debug ports and switches, injection, kernel
//!   settings), read from /proc and /sys
//! - [`config`]: the config file, environment and flag overrides, validation
//! - [`metrics`]: counters and gauges, Prometheus text, `/metrics` and
//!   `/status`
//! - [`sys`]: the host: identity, clocks, users, environment, systemd
//! - [`error`]: helpers every error shares
//! - [`duration`]: the one duration grammar (config, CLI, grants)
//! - [`cli`]: one module per `debugmon` subcommand

pub mod cli;
pub mod config;
pub mod decide;
pub mod duration;
pub mod ebpf;
pub mod enrich;
pub mod error;
pub mod event;
pub mod grants;
pub mod inventory;
pub mod metrics;
pub mod policy;
pub mod process;
pub mod record;
pub mod review;
pub mod runtime;
pub mod sink;
pub mod spool;
pub mod sys;

pub use runtime::{AgentError, RunSummary, Settings, run};

//! The agent's configuration: `/etc/debugmon/config.toml` and its drop-ins
//! `/etc/debugmon/config.d/*.toml` (merged table by table, in file-name
//! order) deserialized into the structs below (unknown keys refused), then
//! overridden by `DEBUGMON_<SECTION>_<KEY>` environment variables and
//! command-line flags (flags > env > drop-ins > file > defaults), then
//! checked by [`Config::validate`].
//!
//! - [`load`]: reading the file, error locations, applying overrides
//! - [`overrides`]: the keys an environment variable or flag can set
//! - [`validate`]: the checks serde's types cannot express
//! - [`units`]: durations, sizes and secrets
//!
//! Every option, with its default, is documented in the shipped file
//! `packaging/config.toml`; a unit test keeps that file and
//! [`Config::default`] identical.

mod delivery;
#[cfg(test)]
mod drop_in_tests;
pub mod load;
pub mod overrides;
pub mod reload;
pub mod units;
pub mod validate;

use std::{path::PathBuf, time::Duration};

pub use delivery::agent_inbox;
pub use load::{ConfigError, ConfigSource, DEFAULT_PATH, DROP_IN_DIR, Flag, Invalid, load};
use serde::{Deserialize, Serialize};
pub use units::{ByteSize, HumanDuration, Secret};

/// The whole file. Each section may be omitted; omitted keys take their defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub agent: AgentSection,
    pub inventory: InventorySection,
    pub policy: PolicySection,
    pub grants: GrantsSection,
    pub control: ControlSection,
    pub sinks: SinksSection,
    pub spool: SpoolSection,
    pub nats: NatsSection,
    pub metrics: MetricsSection,
    pub log: LogSection,
    pub host: HostSection,
    /// What is removed from argv before a record is sealed.
    pub redact: crate::record::redact::RedactConfig,
}

/// `[agent]`: the kernel side and the process table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSection {
    /// Kernel ring buffer size in MiB; a power of two.
    pub ring_mib: u32,
    /// Milliseconds between reads of the ring buffer while events flow
    /// (a quiet host is read at once when an event comes): longer
    /// batches cost less CPU per event and delay records more.
    pub read_interval_ms: u64,
    /// Ancestry levels recorded per actor.
    pub ancestry_depth: usize,
    /// Seconds over which repeated accesses (PEEK/POKE, process_vm_*) are counted into one record.
    pub aggregate_window_secs: u64,
    /// Seconds an exited process stays known, for its children's records.
    pub exit_grace_secs: u64,
    /// Bound of the process table.
    pub table_max: usize,
    /// Enforce deny rules in the kernel (BPF-LSM, else the kill fallback)
    /// and protect the agent; `false` observes only.
    pub enforce: bool,
    /// Seconds between `agent` heartbeat records, which make a stopped or
    /// frozen agent visible in the stream as silence; 0 disables them.
    pub heartbeat_secs: u64,
    /// Have the kernel programs log each counted failure (which site,
    /// thread and error) into the agent's log; off by default.
    pub kernel_log: bool,
}

impl Default for AgentSection {
    fn default() -> Self {
        Self {
            ring_mib: 4,
            read_interval_ms: crate::runtime::reader::DEFAULT_READ_INTERVAL_MS,
            ancestry_depth: 16,
            aggregate_window_secs: 5,
            exit_grace_secs: 10,
            table_max: 262_144,
            enforce: true,
            heartbeat_secs: 5,
            kernel_log: false,
        }
    }
}

/// `[inventory]`: the host's debug exposure as `inventory` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InventorySection {
    /// Seconds between inventories (one is also taken at start); 0: none.
    pub interval_secs: u64,
}

impl Default for InventorySection {
    fn default() -> Self {
        Self {
            interval_secs: 3600,
        }
    }
}

/// `[policy]`: where policies are read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySection {
    /// Directories whose `*.yaml` files are loaded as one set; a file in a
    /// later directory replaces the one of the same name in an earlier one.
    pub dirs: Vec<PathBuf>,
}

impl Default for PolicySection {
    fn default() -> Self {
        Self {
            dirs: crate::policy::DEFAULT_DIRS.map(PathBuf::from).to_vec(),
        }
    }
}

/// `[grants]`: time-boxed access grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrantsSection {
    /// Where grants persist across restarts.
    pub path: PathBuf,
    /// The longest grant `debugmon grant --for` accepts.
    pub max_duration: HumanDuration,
    /// Approver keys (`NAME:HEXKEY`, from `debugmon approve key`) whose
    /// approvals of `debugmon grant --request` this host accepts; none:
    /// requests are refused.
    pub approvers: Vec<String>,
    /// Two-person rule: an approver may not approve a request they made
    /// (their name is the requester's login user) or a grant for themselves.
    pub two_person: bool,
    /// How long a request waits for its approval.
    pub request_ttl: HumanDuration,
    /// Where open requests persist across restarts.
    pub requests_path: PathBuf,
}

impl Default for GrantsSection {
    fn default() -> Self {
        Self {
            path: PathBuf::from("/var/lib/debugmon/grants.json"),
            max_duration: HumanDuration::from_secs(4 * 3600),
            approvers: Vec::new(),
            two_person: true,
            request_ttl: HumanDuration::from_secs(3600),
            requests_path: PathBuf::from("/var/lib/debugmon/requests.json"),
        }
    }
}

/// `[control]`: the local control socket (grant, revoke, status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlSection {
    pub socket: PathBuf,
}

impl Default for ControlSection {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/run/debugmon/control.sock"),
        }
    }
}

/// `[sinks]`: where records are written besides NATS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinksSection {
    /// One JSON record per line on stdout (the journal, under systemd).
    pub stdout: bool,
    /// How stdout and the file write records: `json` (the sealed record)
    /// or `ecs` (an ECS document with the sealed record under `debugmon`).
    pub format: crate::sink::ecs::RecordFormat,
    /// Records sent to journald natively, with fields.
    pub journal: bool,
    pub file: FileSinkSection,
}

impl Default for SinksSection {
    fn default() -> Self {
        Self {
            stdout: true,
            format: crate::sink::ecs::RecordFormat::Json,
            journal: false,
            file: FileSinkSection::default(),
        }
    }
}

/// `[sinks.file]`: a rotated JSON-lines file; off while `path` is unset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileSinkSection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Size at which the file is rotated.
    pub max_bytes: ByteSize,
    /// Rotated files kept.
    pub keep: u32,
}

impl Default for FileSinkSection {
    fn default() -> Self {
        Self {
            path: None,
            max_bytes: ByteSize(100 << 20),
            keep: 5,
        }
    }
}

/// `[spool]`: the durable on-disk queue used while NATS is unreachable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolSection {
    pub dir: PathBuf,
    /// Past this bound the oldest records are shed (counted and alerted).
    pub max_bytes: ByteSize,
    /// Longest time a record waits in the page cache before the spool is
    /// fsync'd (alerts and denials are fsync'd at once; 0: every write).
    pub sync_interval_ms: u64,
}

impl Default for SpoolSection {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("/var/lib/debugmon/spool"),
            max_bytes: ByteSize(1 << 30),
            sync_interval_ms: crate::sink::delivery::DEFAULT_SYNC_INTERVAL_MS,
        }
    }
}

/// `[nats]`: delivery to NATS JetStream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSection {
    pub enabled: bool,
    /// Servers, tried in turn: `nats://host:port` or `tls://host:port`.
    pub urls: Vec<String>,
    /// JetStream stream, created when absent.
    pub stream: String,
    /// Subjects are `<prefix>.audit.<host>.<kind>` and `<prefix>.alert.<host>.<severity>`.
    pub subject_prefix: String,
    pub tls: NatsTlsSection,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nkey_seed_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creds_file: Option<PathBuf>,
    /// Stream retention by age when the agent creates the stream ("0": unlimited).
    pub max_age: HumanDuration,
    /// Stream retention by size when the agent creates the stream (0: unlimited).
    pub max_bytes: ByteSize,
    /// Copies of the stream a server cluster keeps when the agent creates
    /// it (3 on a 3-node cluster: losing the leader loses no record).
    pub replicas: usize,
}

impl Default for NatsSection {
    fn default() -> Self {
        Self {
            enabled: false,
            urls: vec!["nats://127.0.0.1:4222".into()],
            stream: "DEBUGMON".into(),
            subject_prefix: "debugmon".into(),
            tls: NatsTlsSection::default(),
            token: None,
            user: None,
            password: None,
            nkey_seed_file: None,
            creds_file: None,
            max_age: HumanDuration::from_secs(30 * 86_400),
            max_bytes: ByteSize(10 << 30),
            replicas: 1,
        }
    }
}

/// `[nats.tls]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsTlsSection {
    /// CA bundle to verify the server with (system roots when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// Client certificate and key (mutual TLS); both or neither.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Refuse to connect without TLS.
    pub required: bool,
}

/// `[metrics]`: the Prometheus endpoint (`/metrics`, and `/status` as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// `address:port` to listen on; empty disables the endpoint.
    pub listen: String,
}

impl Default for MetricsSection {
    fn default() -> Self {
        // Not 9464, the OpenTelemetry Prometheus exporter's default, nor a
        // port of the exporters' 9100-9999 range (docs/metrics.md).
        Self {
            listen: "127.0.0.1:7464".into(),
        }
    }
}

/// `[log]`: the agent's own log (stderr, the journal under systemd).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// A level (`error`, `warn`, `info`, `debug`, `trace`) or a tracing filter directive.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// `[host]`: host identity and state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostSection {
    /// The host's Ed25519 signing key (created on first start).
    pub key_path: PathBuf,
    pub state_dir: PathBuf,
}

impl Default for HostSection {
    fn default() -> Self {
        Self {
            key_path: PathBuf::from("/var/lib/debugmon/host.key"),
            state_dir: PathBuf::from("/var/lib/debugmon"),
        }
    }
}

impl Config {
    /// The agent's settings: the `[agent]` section, the metrics address
    /// and the delivery stage (sinks, spool, NATS, host key). Call on a
    /// validated config (an unparsable `metrics.listen` disables the
    /// endpoint here; `validate` refuses it). Fails when the NATS nkey seed
    /// file cannot be read.
    pub fn to_settings(&self) -> Result<crate::runtime::Settings, crate::sink::nats::NatsError> {
        let a = &self.agent;
        Ok(crate::runtime::Settings {
            ring_bytes: a.ring_mib.saturating_mul(1024 * 1024),
            read_interval: Duration::from_millis(a.read_interval_ms),
            ancestry_depth: a.ancestry_depth,
            table_max: a.table_max,
            exit_grace: Duration::from_secs(a.exit_grace_secs),
            aggregate_window: Duration::from_secs(a.aggregate_window_secs),
            heartbeat: (a.heartbeat_secs > 0).then(|| Duration::from_secs(a.heartbeat_secs)),
            inventory: (self.inventory.interval_secs > 0)
                .then(|| Duration::from_secs(self.inventory.interval_secs)),
            metrics_listen: self.metrics.listen.parse().ok(),
            enforce: a.enforce,
            kernel_log: a.kernel_log,
            policy_dirs: self.policy.dirs.clone(),
            grants_path: self.grants.path.clone(),
            grants_max: self.grants.max_duration.0,
            control_socket: self.control.socket.clone(),
            approvals: crate::runtime::approvals::ApprovalSettings {
                // `validate` refuses a bad entry; should one get here, no
                // approver is trusted and every request is refused.
                approvers: crate::grants::approval::Approvers::parse(&self.grants.approvers)
                    .unwrap_or_default(),
                two_person: self.grants.two_person,
                request_ttl: self.grants.request_ttl.0,
                requests_path: self.grants.requests_path.clone(),
            },
            delivery: self.delivery_config()?,
            reload: None,
        })
    }

    /// The effective configuration as TOML, secrets masked (for `config check`).
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }
}

#[cfg(test)]
mod tests;

//! The policy file schema (what `policies/*.yaml` may contain) as serde
//! types, and the enums shared by the engine and the decisions it returns.
//! policies/README.md documents every field; keep the two in step.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a rule does when it fires. Ordered: a stronger action wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Allow,
    Alert,
    Deny,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Alert => "alert",
            Self::Deny => "deny",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    #[default]
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `on:` triggers of a rule. Each event belongs to exactly one
/// [`crate::policy::EventClass`]; a trigger names one or more classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Every exec, debugger or not.
    Exec,
    /// An exec whose program is in the `debuggers:` list.
    DebuggerExec,
    /// PTRACE_ATTACH and PTRACE_SEIZE.
    PtraceAttach,
    /// PTRACE_TRACEME (anti-debugging and some loaders).
    PtraceTraceme,
    /// Any other ptrace request: PEEK*, POKE*, GET*, SET*, CONT, ...
    PtraceAccess,
    /// process_vm_readv, reads of /proc/PID/mem or /proc/PID/environ.
    MemRead,
    /// process_vm_writev, writes to /proc/PID/mem.
    MemWrite,
    /// `mem_read` or `mem_write`.
    MemAccess,
    /// perf_event_open on another process.
    PerfAttach,
    /// bpf() program loads.
    BpfLoad,
    /// pidfd_getfd: copying a file descriptor out of another process.
    PidfdGetfd,
    /// An environment read by one of the host's process tools
    /// (`process_tools:`); not matched by `mem_read`.
    InventoryRead,
    /// A debug-trigger signal sent to a runtime (SIGQUIT to a JVM: jcmd's
    /// attach; SIGUSR1 to Node: its inspector).
    DebugSignal,
    /// A debug interface started listening on a TCP port.
    DebugPort,
    /// A write to `/etc/ld.so.preload`.
    LibraryInjection,
    /// A process dumped core.
    CoreDump,
    /// A finding of the host inventory (`detail.findings`): a debug port
    /// on every address, a process traced by a program that is no
    /// debugger, `/etc/ld.so.preload`, a permissive kernel setting.
    Inventory,
}

/// `roles: { NAME: {users, groups} }`. The same role in several files is the
/// union of its members: a drop-in adds people to a shipped role.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// `read`: the role's exemptions let its members look (attach, read
    /// memory and registers) but not change a target. `full` when absent.
    #[serde(default)]
    pub access: Option<super::access::AccessMode>,
}

/// `debuggers: { CLASS: {exe, comm} }` globs that classify a program.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebuggerSpec {
    #[serde(default)]
    pub exe: Vec<String>,
    #[serde(default)]
    pub comm: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    pub on: Vec<Trigger>,
    #[serde(default)]
    pub actor: ActorSpec,
    #[serde(default)]
    pub target: TargetSpec,
    #[serde(default)]
    pub detail: DetailSpec,
    #[serde(default)]
    pub context: ContextSpec,
    #[serde(default)]
    pub unless: UnlessSpec,
    pub action: Action,
    #[serde(default)]
    pub severity: Severity,
    #[serde(default)]
    pub tags: Vec<String>,
    pub title: Option<String>,
    pub description: Option<String>,
}

/// Conditions on the process that acts. Lists match when any item matches;
/// all given conditions must hold.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActorSpec {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub uids: Vec<u32>,
    #[serde(default)]
    pub euids: Vec<u32>,
    #[serde(default)]
    pub auids: Vec<u32>,
    #[serde(default)]
    pub login_users: Vec<String>,
    #[serde(default)]
    pub exe: Vec<String>,
    #[serde(default)]
    pub comm: Vec<String>,
    #[serde(default)]
    pub unit: Vec<String>,
    /// Globs over debugger class names (`["*"]`: any known debugger).
    #[serde(default)]
    pub debugger: Vec<String>,
    #[serde(default)]
    pub argv_contains: Vec<String>,
    pub argv_regex: Option<String>,
    pub tty: Option<bool>,
    pub ssh: Option<bool>,
    pub container: Option<bool>,
    /// The login uid is set and differs from the effective uid (sudo, su).
    pub login_differs: Option<bool>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    #[serde(default)]
    pub comm: Vec<String>,
    #[serde(default)]
    pub exe: Vec<String>,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub uids: Vec<u32>,
    #[serde(default)]
    pub unit: Vec<String>,
    pub container: Option<bool>,
    /// The target runs as a different uid than the actor's real uid.
    pub other_user: Option<bool>,
    /// The target is the actor's own process (e.g. /proc/self/mem).
    pub same_process: Option<bool>,
}

/// Conditions on the kind-specific detail of the record (globs).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetailSpec {
    #[serde(default)]
    pub ptrace_request: Vec<String>,
    #[serde(default)]
    pub via: Vec<String>,
    #[serde(default)]
    pub prog_type: Vec<String>,
    /// Globs over the exec's debug and injection switches, each named
    /// `INTERFACE` or `INTERFACE:RISK` (`jdwp`, `jdwp:any_address`,
    /// `ld_preload:writable_dir`; docs/records.md lists them).
    #[serde(default)]
    pub debug_switches: Vec<String>,
    /// Globs over an inventory record's findings (`debug_port:any_address`,
    /// `traced:non_debugger`, `ld_so_preload`; docs/records.md lists them).
    #[serde(default)]
    pub findings: Vec<String>,
}

/// When the rule applies. `hours: "09:00-18:00"` (end exclusive; may wrap
/// midnight), `days: [mon, tue]` or ranges `[mon-fri]`, `timezone: UTC`
/// (default), `local`, a fixed offset such as `+02:00`, or an IANA name such
/// as `Europe/Berlin` (daylight saving followed).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextSpec {
    pub hours: Option<String>,
    #[serde(default)]
    pub days: Vec<String>,
    pub timezone: Option<String>,
}

/// Exemptions: the rule does not fire when any of them holds.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnlessSpec {
    #[serde(default)]
    pub role: Vec<String>,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub exe: Vec<String>,
    #[serde(default)]
    pub comm: Vec<String>,
    /// An active grant for the actor that covers this target.
    #[serde(default)]
    pub grant: bool,
}

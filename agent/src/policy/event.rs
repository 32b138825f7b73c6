//! The event the engine evaluates: an owned view of a record
//! (docs/records.md) with only the fields policy can look at. It
//! deserializes from a record's JSON, ignores unknown fields and treats every field that can
//! be missing as optional, so records from older or newer agents still load.

use serde::Deserialize;

pub use crate::event::Kind;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Ssh {
    pub src_ip: Option<String>,
    pub src_port: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Actor {
    pub pid: Option<u32>,
    pub uid: Option<u32>,
    pub user: Option<String>,
    pub gid: Option<u32>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub groups: Vec<String>,
    pub euid: Option<u32>,
    pub auid: Option<u32>,
    pub login_user: Option<String>,
    pub session_id: Option<u32>,
    pub tty: Option<String>,
    pub ssh: Option<Ssh>,
    pub exe: Option<String>,
    /// The exe path is the kernel's file and only root could have put it
    /// there (required by exemptions by `exe`).
    pub exe_trusted: Option<bool>,
    pub comm: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub argv: Vec<String>,
    pub cwd: Option<String>,
    pub unit: Option<String>,
    pub container_id: Option<String>,
}

impl Actor {
    /// The human behind the action: the login user when the audit layer
    /// knows it (sudo keeps it), else the user the process runs as.
    pub fn person(&self) -> Option<&str> {
        self.login_user.as_deref().or(self.user.as_deref())
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Target {
    pub pid: Option<u32>,
    /// Boot-time ns the process started (names it across pid reuse).
    pub start_ns: Option<u64>,
    pub comm: Option<String>,
    pub exe: Option<String>,
    pub uid: Option<u32>,
    pub user: Option<String>,
    pub unit: Option<String>,
    pub container_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Detail {
    /// exec: the debugger class of the new program, from `debuggers:`.
    pub debugger: Option<String>,
    pub ptrace_request: Option<String>,
    pub via: Option<String>,
    pub access: Option<String>,
    pub prog_type: Option<String>,
    /// `ok` or the errno name of the call, when known.
    pub result: Option<String>,
    /// An environment read by one of the host's process tools
    /// (`process_tools:`): inventory, not a memory read.
    pub inventory: Option<bool>,
    /// exec: the debug and injection switches the program was started
    /// with, as `INTERFACE` and, where one applies, `INTERFACE:RISK`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub debug_switches: Vec<String>,
    /// inventory: what the host inventory found (`debug_port:any_address`,
    /// `traced:non_debugger`, ...).
    #[serde(default, deserialize_with = "null_as_default")]
    pub findings: Vec<String>,
    /// The access changes the target (set by the kernel: a ptrace request
    /// that writes, EXITKILL, a write through `/proc/PID/mem`).
    pub writes: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PolicyEvent {
    #[serde(default)]
    pub kind: Kind,
    #[serde(default)]
    pub actor: Actor,
    pub target: Option<Target>,
    #[serde(default)]
    pub detail: Detail,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The one class each event falls in; rules are indexed by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EventClass {
    Exec = 0,
    DebuggerExec,
    PtraceAttach,
    PtraceTraceme,
    PtraceAccess,
    MemRead,
    MemWrite,
    PidfdGetfd,
    PerfAttach,
    BpfLoad,
    InventoryRead,
    DebugSignal,
    DebugPort,
    Injection,
    CoreDump,
    Inventory,
}

impl EventClass {
    pub const COUNT: usize = 16;

    pub fn bit(self) -> u16 {
        1 << self as u8
    }

    /// Words for a person: "ptrace attach", "memory write".
    pub fn describe(self) -> &'static str {
        match self {
            Self::Exec => "exec",
            Self::DebuggerExec => "debugger exec",
            Self::PtraceAttach => "ptrace attach",
            Self::PtraceTraceme => "ptrace traceme",
            Self::PtraceAccess => "ptrace access",
            Self::MemRead => "memory read",
            Self::MemWrite => "memory write",
            Self::PidfdGetfd => "pidfd_getfd",
            Self::PerfAttach => "perf attach",
            Self::BpfLoad => "bpf load",
            Self::InventoryRead => "process inventory read",
            Self::DebugSignal => "debug signal",
            Self::DebugPort => "debug port",
            Self::Injection => "library injection",
            Self::CoreDump => "core dump",
            Self::Inventory => "inventory finding",
        }
    }
}

impl PolicyEvent {
    /// Whether the action changes its target, which a read-only grant or
    /// role does not cover: process_vm_writev and pidfd_getfd always; a
    /// ptrace request or a `/proc/PID/mem` access when the kernel said so
    /// (a writing open alone is not a write: the kernel judges each write
    /// through it, and under BPF-LSM refuses the open).
    pub fn writes(&self) -> bool {
        let d = &self.detail;
        d.writes == Some(true)
            || (self.kind == Kind::MemAccess
                && matches!(d.via.as_deref(), Some("process_vm_writev" | "pidfd_getfd")))
    }

    /// Parses a record (one JSON object).
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// The class of this event, `None` for records no rule applies to.
    pub fn class(&self) -> Option<EventClass> {
        let d = &self.detail;
        Some(match self.kind {
            Kind::Exec if d.debugger.is_some() => EventClass::DebuggerExec,
            Kind::Exec => EventClass::Exec,
            Kind::Ptrace => match d.ptrace_request.as_deref() {
                Some("PTRACE_ATTACH" | "PTRACE_SEIZE") => EventClass::PtraceAttach,
                Some("PTRACE_TRACEME") => EventClass::PtraceTraceme,
                _ => EventClass::PtraceAccess,
            },
            Kind::MemAccess => match (d.via.as_deref(), d.access.as_deref()) {
                (Some("pidfd_getfd"), _) => EventClass::PidfdGetfd,
                (Some("proc_environ"), Some("read")) if d.inventory == Some(true) => {
                    EventClass::InventoryRead
                }
                (Some("process_vm_writev"), _) | (_, Some("write")) => EventClass::MemWrite,
                _ => EventClass::MemRead,
            },
            Kind::PerfAttach => EventClass::PerfAttach,
            Kind::Bpf => EventClass::BpfLoad,
            Kind::DebugSignal => EventClass::DebugSignal,
            Kind::DebugPort => EventClass::DebugPort,
            Kind::Injection => EventClass::Injection,
            Kind::CoreDump => EventClass::CoreDump,
            Kind::Inventory => EventClass::Inventory,
            Kind::Grant | Kind::Policy | Kind::Agent | Kind::Lost | Kind::Other => return None,
        })
    }
}

impl crate::policy::model::Trigger {
    /// The event classes this trigger covers.
    pub fn classes(self) -> u16 {
        use crate::policy::model::Trigger as T;
        match self {
            T::Exec => EventClass::Exec.bit() | EventClass::DebuggerExec.bit(),
            T::DebuggerExec => EventClass::DebuggerExec.bit(),
            T::PtraceAttach => EventClass::PtraceAttach.bit(),
            T::PtraceTraceme => EventClass::PtraceTraceme.bit(),
            T::PtraceAccess => EventClass::PtraceAccess.bit(),
            T::MemRead => EventClass::MemRead.bit(),
            T::MemWrite => EventClass::MemWrite.bit(),
            T::MemAccess => EventClass::MemRead.bit() | EventClass::MemWrite.bit(),
            T::PerfAttach => EventClass::PerfAttach.bit(),
            T::BpfLoad => EventClass::BpfLoad.bit(),
            T::PidfdGetfd => EventClass::PidfdGetfd.bit(),
            T::InventoryRead => EventClass::InventoryRead.bit(),
            T::DebugSignal => EventClass::DebugSignal.bit(),
            T::DebugPort => EventClass::DebugPort.bit(),
            T::LibraryInjection => EventClass::Injection.bit(),
            T::CoreDump => EventClass::CoreDump.bit(),
            T::Inventory => EventClass::Inventory.bit(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_record_and_ignores_unknown_fields() {
        let e = PolicyEvent::from_json(
            r#"{"schema":1,"seq":9,"kind":"ptrace","actor":{"pid":4242,"uid":1001,
            "user":"alice","auid":null,"groups":null,"ssh":{"src_ip":"10.0.0.1","src_port":22},
            "ancestry":[]},"target":{"pid":77,"comm":"postgres"},
            "detail":{"ptrace_request":"PTRACE_SEIZE","extra":1}}"#,
        )
        .unwrap();
        assert_eq!(e.kind, Kind::Ptrace);
        assert_eq!(e.actor.uid, Some(1001));
        assert!(e.actor.groups.is_empty());
        assert_eq!(e.class(), Some(EventClass::PtraceAttach));
        assert_eq!(e.actor.person(), Some("alice"));
    }

    #[test]
    fn classes_follow_the_detail() {
        let class = |j: &str| PolicyEvent::from_json(j).unwrap().class();
        assert_eq!(
            class(r#"{"kind":"exec","detail":{"debugger":"gdb"}}"#),
            Some(EventClass::DebuggerExec)
        );
        assert_eq!(class(r#"{"kind":"exec"}"#), Some(EventClass::Exec));
        assert_eq!(
            class(r#"{"kind":"ptrace","detail":{"ptrace_request":"PTRACE_TRACEME"}}"#),
            Some(EventClass::PtraceTraceme)
        );
        assert_eq!(
            class(r#"{"kind":"ptrace","detail":{"ptrace_request":"PTRACE_POKEDATA"}}"#),
            Some(EventClass::PtraceAccess)
        );
        assert_eq!(
            class(r#"{"kind":"mem_access","detail":{"via":"proc_mem","access":"write"}}"#),
            Some(EventClass::MemWrite)
        );
        assert_eq!(
            class(r#"{"kind":"mem_access","detail":{"via":"process_vm_readv","access":"read"}}"#),
            Some(EventClass::MemRead)
        );
        assert_eq!(
            class(r#"{"kind":"mem_access","detail":{"via":"pidfd_getfd","access":"read"}}"#),
            Some(EventClass::PidfdGetfd)
        );
        assert_eq!(class(r#"{"kind":"bpf"}"#), Some(EventClass::BpfLoad));
        assert_eq!(class(r#"{"kind":"grant"}"#), None);
    }
}

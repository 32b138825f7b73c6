//! The kinds of record (docs/records.md), one enum for every stage: the
//! record builder writes [`Kind::as_str`], the decider and the policy
//! engine match on it, the metrics count by it, and a record read back
//! (`policy explain`) deserializes into it. Nothing turns a kind into a
//! string and parses it back.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Exec,
    Ptrace,
    MemAccess,
    PerfAttach,
    Bpf,
    Grant,
    Policy,
    Agent,
    Lost,
    /// A signal a runtime takes as a debug trigger, sent to it.
    DebugSignal,
    /// A debug interface starting to listen on a TCP port.
    DebugPort,
    /// Library injection into every program (`/etc/ld.so.preload`).
    Injection,
    /// A process dumped its memory to a core file.
    CoreDump,
    /// The host's debug exposure: a snapshot, or one finding of it.
    Inventory,
    /// A kind this agent does not write (a record from a newer agent).
    #[default]
    #[serde(other)]
    Other,
}

impl Kind {
    /// Every kind the agent writes, in the order metrics list them.
    pub const WRITTEN: [Kind; 14] = [
        Kind::Exec,
        Kind::Ptrace,
        Kind::MemAccess,
        Kind::PerfAttach,
        Kind::Bpf,
        Kind::Grant,
        Kind::Policy,
        Kind::Agent,
        Kind::Lost,
        Kind::DebugSignal,
        Kind::DebugPort,
        Kind::Injection,
        Kind::CoreDump,
        Kind::Inventory,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Exec => "exec",
            Kind::Ptrace => "ptrace",
            Kind::MemAccess => "mem_access",
            Kind::PerfAttach => "perf_attach",
            Kind::Bpf => "bpf",
            Kind::Grant => "grant",
            Kind::Policy => "policy",
            Kind::Agent => "agent",
            Kind::Lost => "lost",
            Kind::DebugSignal => "debug_signal",
            Kind::DebugPort => "debug_port",
            Kind::Injection => "injection",
            Kind::CoreDump => "core_dump",
            Kind::Inventory => "inventory",
            Kind::Other => "other",
        }
    }

    /// Kinds that describe an action a rule can decide.
    pub const fn is_action(self) -> bool {
        matches!(
            self,
            Kind::Exec
                | Kind::Ptrace
                | Kind::MemAccess
                | Kind::PerfAttach
                | Kind::Bpf
                | Kind::DebugSignal
                | Kind::DebugPort
                | Kind::Injection
                | Kind::CoreDump
                | Kind::Inventory
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde() {
        for k in Kind::WRITTEN {
            let back: Kind = serde_json::from_str(&format!("\"{}\"", k.as_str())).unwrap();
            assert_eq!(back, k);
        }
        let unknown: Kind = serde_json::from_str("\"heartbeat\"").unwrap();
        assert_eq!(unknown, Kind::Other);
    }
}

//! The `detail` member of each record kind (docs/records.md "detail per
//! kind"): what the kernel reported about an exec or an access, named.

use std::{borrow::Cow, collections::BTreeMap};

use agent_common::{AccessKind, Enforcement, flags};
use serde::Serialize;

use super::names;
use crate::{
    decide::PolicyDetail,
    enrich::{Escapes, switches::Switch},
    event::{AccessInfo, ExecInfo, Kind},
};

#[derive(Serialize)]
pub struct ExecDetail {
    /// Size of the whole argv in the process, copied or not.
    pub argv_bytes: u32,
    pub argv_truncated: bool,
    /// Debug and injection switches in argv and the captured environment.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub debug_switches: Vec<Switch>,
    /// Debugger class of the program, from the policy's `debuggers:` list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debugger: Option<String>,
    /// The environment variables the kernel captured at exec (only the
    /// configured switch names; values redacted like argv).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// `cut` (a value longer than 255 bytes), `full` (more than 1 KiB
    /// matched), `incomplete` (the environment was too long to scan).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env_flags: Vec<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub escaped: Vec<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub incomplete: Vec<&'static str>,
}

/// Detail of ptrace, mem_access, perf_attach and bpf records.
#[derive(Serialize, Default)]
pub struct AccessDetail {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ptrace_request: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<&'static str>,
    /// Present (true) when the open was an io_uring request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_uring: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub perf_type: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_wide: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prog_type: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prog_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_fd: Option<u64>,
    /// The BPF-LSM hook that refused the action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lsm_hook: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<&'static str>,
    /// The bpf() command of an attempt on the agent's own objects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bpf_cmd: Option<Cow<'static, str>>,
    /// The agent object it named: `prog 12`, `map 40`, `link 7`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// Pid of the tracer of a traced task (exec under a tracer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracer_pid: Option<u32>,
    /// The debug interface a signal switches on or a port serves (`jdwp`,
    /// `node_inspector`, `jvm_attach`, ...), set by the pipeline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<&'static str>,
    /// A listening port, and the address it is bound to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
    /// `any_address`: the port listens on every address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk: Option<&'static str>,
    /// The targets of an aggregate of routine opens (at most 16; `count`
    /// has them all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<u32>>,
    /// Present (true) for an environment read by one of the host's process
    /// tools (`process_tools:` in the policy): inventory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inventory: Option<bool>,
    /// Present (true) when the access was seen as the memory was about to
    /// be read or written (whatever way the file was opened), not when
    /// the file was opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_access: Option<bool>,
    /// Present (true) when the access changes the target: writes its
    /// memory or registers, takes one of its descriptors, or ties its life
    /// to the tracer's (EXITKILL). A read-only grant does not cover it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writes: Option<bool>,
    /// `ok` or the errno name, when the syscall's result is known;
    /// `refused` on an aggregate of calls the kernel refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Cow<'static, str>>,
    /// Calls this record stands for.
    pub count: u64,
    /// True for a periodic aggregate of repeats after a first record.
    pub aggregate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_s: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub escaped: Vec<&'static str>,
}

/// Events dropped before they became records, since the previous `lost` record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LostCounts {
    pub exec: u64,
    pub fork: u64,
    pub exit: u64,
    pub access: u64,
    /// Ring buffer items that could not be decoded.
    pub undecodable: u64,
    /// Sealed records shed by the full spool before NATS took them.
    pub spool_shed: u64,
}

impl LostCounts {
    pub fn total(&self) -> u64 {
        self.exec + self.fork + self.exit + self.access + self.undecodable + self.spool_shed
    }

    /// What moved since `earlier` (counters only grow; a smaller one is 0).
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            exec: self.exec.saturating_sub(earlier.exec),
            fork: self.fork.saturating_sub(earlier.fork),
            exit: self.exit.saturating_sub(earlier.exit),
            access: self.access.saturating_sub(earlier.access),
            undecodable: self.undecodable.saturating_sub(earlier.undecodable),
            spool_shed: self.spool_shed.saturating_sub(earlier.spool_shed),
        }
    }
}

/// Detail of a `lost` record.
#[derive(Serialize)]
pub struct LostDetail {
    counts: LostCounts,
    total: u64,
    /// Totals since the agent started.
    cumulative: LostCounts,
}

impl LostDetail {
    /// `counts` since the last `lost` record, and the totals.
    pub fn new(counts: LostCounts, cumulative: LostCounts) -> Self {
        Self {
            total: counts.total(),
            counts,
            cumulative,
        }
    }
}

/// The record kind and detail fields of an access.
pub fn access_detail(a: &AccessInfo) -> (Kind, AccessDetail) {
    let mut d = AccessDetail {
        count: a.count,
        aggregate: a.aggregate,
        result: match a.ret {
            _ if a.refused => Some(Cow::Borrowed("refused")),
            Some(r) if r < 0 => Some(names::errno(-r)),
            Some(_) => Some(Cow::Borrowed("ok")),
            None => None,
        },
        writes: a.writes.then_some(true),
        ..AccessDetail::default()
    };
    let rw = |write: bool| Some(if write { "write" } else { "read" });
    let kind = match a.access {
        AccessKind::Ptrace => {
            d.ptrace_request = Some(names::ptrace_request(a.request));
            Kind::Ptrace
        }
        AccessKind::VmReadv => {
            d.via = Some("process_vm_readv");
            d.access = rw(false);
            Kind::MemAccess
        }
        AccessKind::VmWritev => {
            d.via = Some("process_vm_writev");
            d.access = rw(true);
            Kind::MemAccess
        }
        AccessKind::ProcMem | AccessKind::ProcEnviron => {
            d.via = Some(if a.access == AccessKind::ProcMem {
                "proc_mem"
            } else {
                "proc_environ"
            });
            // O_WRONLY (1) or O_RDWR (2) open for writing.
            d.access = rw(a.request & 3 != 0);
            d.io_uring = a.io_uring.then_some(true);
            d.at_access = a.at_access.then_some(true);
            Kind::MemAccess
        }
        AccessKind::PidfdGetfd => {
            d.via = Some("pidfd_getfd");
            d.access = Some("fd");
            d.target_fd = Some(a.arg);
            Kind::MemAccess
        }
        AccessKind::PerfOpen => {
            d.perf_type = Some(names::perf_type(a.request));
            let cpu = a.arg as u32 as i32;
            d.cpu = (cpu >= 0).then_some(cpu);
            d.system_wide = Some(a.target_pid == 0);
            Kind::PerfAttach
        }
        AccessKind::BpfProgLoad => {
            d.prog_type = Some(names::bpf_prog_type(a.request));
            Kind::Bpf
        }
        AccessKind::LsmAccess => {
            // The kernel routes attach, process_vm_*, /proc/<pid>/mem and
            // pidfd_getfd through this one check; the syscall's own record
            // (sent at its entry) says which it was.
            d.lsm_hook = Some("ptrace_access_check");
            d.access = Some("attach");
            Kind::Ptrace
        }
        AccessKind::LsmTraceme => {
            d.lsm_hook = Some("ptrace_traceme");
            d.ptrace_request = Some(names::ptrace_request(0));
            Kind::Ptrace
        }
        AccessKind::LsmExec => {
            d.lsm_hook = Some("bprm_check_security");
            Kind::Exec
        }
        AccessKind::ExecTraced => {
            // A traced task exec'd a protected program: the tracer is the
            // actor (the pipeline swaps it in), the new process the target.
            d.event = Some("exec_under_trace");
            d.tracer_pid = Some(a.arg as u32);
            if a.enforcement == Enforcement::DeniedLsm {
                d.lsm_hook = Some("bprm_check_security");
            }
            Kind::Ptrace
        }
        AccessKind::Signal => {
            d.signal = Some(a.request as i32);
            Kind::DebugSignal
        }
        AccessKind::Listen => {
            d.port = Some(a.request as u16);
            let (bind, any) = bind_address(a.arg as u16, &a.name);
            d.bind = Some(bind);
            d.risk = any.then_some("any_address");
            Kind::DebugPort
        }
        AccessKind::KernelMem => {
            d.via = Some(match a.arg {
                0 => "kcore",
                1 => "dev_mem",
                2 => "dev_kmem",
                _ => "dev_port",
            });
            d.access = rw(a.request & 3 != 0);
            Kind::MemAccess
        }
        AccessKind::PreloadWrite => {
            d.via = Some("ld_so_preload");
            d.access = rw(true);
            Kind::Injection
        }
        AccessKind::ProcMapFiles => {
            d.via = Some("map_files");
            d.access = rw(a.request & 3 != 0);
            Kind::MemAccess
        }
        AccessKind::ProcFdMemfd => {
            d.via = Some("proc_fd_memfd");
            d.access = rw(a.request & 3 != 0);
            Kind::MemAccess
        }
        AccessKind::AgentObject => {
            d.event = Some("tamper");
            d.bpf_cmd = Some(names::bpf_cmd(a.request));
            let kind = match (a.arg >> 32) as u32 {
                agent_common::object_kind::PROG => "prog",
                agent_common::object_kind::MAP => "map",
                agent_common::object_kind::LINK => "link",
                _ => "object",
            };
            d.object = Some(format!("{kind} {}", a.arg as u32));
            if a.enforcement == Enforcement::DeniedLsm {
                d.lsm_hook = Some("bpf");
            }
            Kind::Agent
        }
        AccessKind::LsmKill => {
            d.lsm_hook = Some("task_kill");
            d.signal = Some(a.request as i32);
            d.event = Some("tamper");
            Kind::Agent
        }
        AccessKind::LsmPerf => {
            d.lsm_hook = Some("perf_event_open");
            d.perf_type = Some(names::perf_type(a.request));
            Kind::PerfAttach
        }
        AccessKind::LsmBpf => {
            d.lsm_hook = Some("bpf");
            Kind::Bpf
        }
    };
    // A syscall event BPF-LSM refused on its way (the hook wrote the
    // refusal on the parked event): name the hook, as its own events do.
    if a.enforcement == Enforcement::DeniedLsm && d.lsm_hook.is_none() {
        d.lsm_hook = match a.access {
            AccessKind::Ptrace if a.request == 0 => Some("ptrace_traceme"),
            AccessKind::Ptrace
            | AccessKind::VmReadv
            | AccessKind::VmWritev
            | AccessKind::ProcMem
            | AccessKind::PidfdGetfd => Some("ptrace_access_check"),
            AccessKind::PerfOpen => Some("perf_event_open"),
            AccessKind::BpfProgLoad => Some("bpf"),
            _ => None,
        };
    }
    (kind, d)
}

/// A socket's bound address as text (`0.0.0.0`, `::1`), and whether it
/// is every address.
fn bind_address(family: u16, raw: &[u8]) -> (String, bool) {
    const AF_INET6: u16 = 10;
    let mut b = [0u8; 16];
    let n = raw.len().min(16);
    b[..n].copy_from_slice(&raw[..n]);
    if family == AF_INET6 {
        let ip = std::net::Ipv6Addr::from(b);
        (ip.to_string(), ip.is_unspecified())
    } else {
        let ip = std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]);
        (ip.to_string(), ip.is_unspecified())
    }
}

impl ExecDetail {
    /// The detail of `e`'s record; `esc` holds the fields rendering escaped.
    pub fn new(e: &ExecInfo, esc: Escapes, debugger: Option<String>) -> Self {
        let mut incomplete = Vec::new();
        for (bit, what) in [
            (flags::ARGV_READ_FAILED, "argv"),
            (flags::FILENAME_READ_FAILED, "exe"),
            (flags::CREDS_READ_FAILED, "creds"),
            (flags::NO_AUDIT_IDS, "audit_ids"),
        ] {
            if e.flags & bit != 0 {
                incomplete.push(what);
            }
        }
        Self {
            argv_truncated: e.argv_truncated,
            argv_bytes: e.argv_total_len,
            escaped: esc.0,
            incomplete,
            debugger,
            debug_switches: Vec::new(),
            env: BTreeMap::new(),
            env_flags: Vec::new(),
        }
    }
}

impl AccessDetail {
    /// The fields policy matches on.
    pub fn policy_detail(&self) -> PolicyDetail {
        PolicyDetail {
            debugger: None,
            ptrace_request: self.ptrace_request.as_ref().map(|c| c.to_string()),
            via: self.via.map(str::to_owned),
            access: self.access.map(str::to_owned),
            prog_type: self.prog_type.as_ref().map(|c| c.to_string()),
            result: self.result.as_ref().map(|c| c.to_string()),
            inventory: self.inventory == Some(true),
            debug_switches: Vec::new(),
            findings: Vec::new(),
            writes: self.writes == Some(true),
        }
    }
}

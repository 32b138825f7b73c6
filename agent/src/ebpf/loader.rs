//! Loads the embedded eBPF object, hands it the kernel layout it needs and
//! the agent's own tgid, and attaches every program in [`PROBES`]. A required
//! probe that fails is fatal at start; an optional one is logged and skipped.

use std::path::Path;

use agent_common::{
    AGENT_TGID_GLOBAL, AGG_MAP, AggKey, DEFAULT_RING_BYTES, EVENTS_MAP, KernelOffsets, LOST_MAP,
    OFFSETS_GLOBAL, READER_IDLE_MAP,
};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::{BtfTracePoint, FEntry, FExit, Lsm, ProgramError, TracePoint},
};
use thiserror::Error;
use tracing::{info, warn};

use super::{
    btf::{BtfError, KernelBtf, VMLINUX_BTF},
    enforce::{EnforceError, Enforcer, Mechanism, mechanism},
    tracefs::{self, TracefsError, TracefsState},
};
use crate::error::error_chain;

/// How a program is attached.
#[derive(Debug, Clone, Copy)]
pub enum Hook {
    /// Classic tracepoint (needs tracefs).
    TracePoint {
        category: &'static str,
        name: &'static str,
    },
    /// BTF-typed raw tracepoint (needs kernel BTF, no tracefs).
    BtfTracePoint { name: &'static str },
    /// fentry (with `exit`, fexit) on the function implementing syscall
    /// `name` (`__x64_sys_<name>`): needs BPF trampolines.
    Syscall { name: &'static str, exit: bool },
    /// The `syscalls/sys_enter_<name>` (with `exit`, `sys_exit_<name>`)
    /// tracepoint: needs tracefs and CONFIG_FTRACE_SYSCALLS.
    SyscallTracePoint { name: &'static str, exit: bool },
}

/// Prefix of the functions the kernel's syscall table calls.
#[cfg(target_arch = "x86_64")]
const SYSCALL_PREFIX: &str = "__x64_sys_";
#[cfg(target_arch = "aarch64")]
const SYSCALL_PREFIX: &str = "__arm64_sys_";

/// A syscall hook: the fentry/fexit program, and its tracepoint twin for
/// kernels that refuse BPF trampolines. The tracepoint is the fallback
/// because enabling any `syscalls/sys_*` tracepoint sends every syscall of
/// every process through the syscall-tracing slow path (measured on this
/// project's 6.18 host: +60 ns per syscall, +18 % for a syscall-bound
/// loop); a trampoline costs only the hooked syscall.
#[derive(Debug, Clone, Copy)]
pub struct SyscallProbe {
    pub fentry: &'static str,
    pub tracepoint: &'static str,
    /// Syscall name (`openat`).
    pub name: &'static str,
    /// Hooks the return (fexit, `sys_exit_*`) instead of the entry.
    pub exit: bool,
}

impl SyscallProbe {
    fn preferred(&self) -> Probe {
        Probe {
            program: self.fentry,
            hook: Hook::Syscall {
                name: self.name,
                exit: self.exit,
            },
            required: false,
        }
    }

    fn fallback(&self) -> Probe {
        Probe {
            program: self.tracepoint,
            hook: Hook::SyscallTracePoint {
                name: self.name,
                exit: self.exit,
            },
            required: false,
        }
    }
}

/// One program of the object and how to attach it.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub program: &'static str,
    pub hook: Hook,
    /// A required probe failing to attach stops the agent at start.
    pub required: bool,
}

/// The programs of the object. Kernel compatibility lives here, as data:
/// the sched hooks exist since 4.x; tp_btf needs 5.5 and BTF. The syscall
/// hooks are in [`SYSCALL_PROBES`].
pub const PROBES: &[Probe] = &[
    Probe {
        program: "exec_sched_process_exec",
        hook: Hook::TracePoint {
            category: "sched",
            name: "sched_process_exec",
        },
        required: true,
    },
    Probe {
        program: "fork_sched_process_fork",
        hook: Hook::BtfTracePoint {
            name: "sched_process_fork",
        },
        required: true,
    },
    Probe {
        program: "exit_sched_process_exit",
        hook: Hook::TracePoint {
            category: "sched",
            name: "sched_process_exit",
        },
        required: true,
    },
    // Opens of another process's memory through io_uring, which no
    // syscall hook sees. A BTF tracepoint: it gets the request as it is,
    // where a classic one first copies the record (~150 ns per
    // completion, measured with NOPs, against ~75 ns for the NOP itself).
    Probe {
        program: "uring_io_uring_complete",
        hook: Hook::BtfTracePoint {
            name: "io_uring_complete",
        },
        required: false,
    },
];

/// The syscall hooks. An exit hook comes before its entry hook: an entry
/// that parks an event for its exit then never runs, even for a moment at
/// start, before that exit is in place. A kernel with neither trampolines
/// nor syscall tracepoints (CONFIG_FTRACE_SYSCALLS) loses that vector,
/// with a warning, not the agent.
pub const SYSCALL_PROBES: &[SyscallProbe] = &[
    sys("fexit_ptrace", "ptrace_sys_exit_ptrace", "ptrace", true),
    sys("fentry_ptrace", "ptrace_sys_enter_ptrace", "ptrace", false),
    sys(
        "fentry_process_vm_readv",
        "mem_sys_enter_process_vm_readv",
        "process_vm_readv",
        false,
    ),
    sys(
        "fentry_process_vm_writev",
        "mem_sys_enter_process_vm_writev",
        "process_vm_writev",
        false,
    ),
    sys("fexit_openat", "mem_sys_exit_openat", "openat", true),
    sys("fentry_openat", "mem_sys_enter_openat", "openat", false),
    sys("fexit_open", "mem_sys_exit_open", "open", true),
    sys("fentry_open", "mem_sys_enter_open", "open", false),
    sys("fexit_openat2", "mem_sys_exit_openat2", "openat2", true),
    sys("fentry_openat2", "mem_sys_enter_openat2", "openat2", false),
    sys(
        "fentry_pidfd_getfd",
        "mem_sys_enter_pidfd_getfd",
        "pidfd_getfd",
        false,
    ),
    sys(
        "fentry_perf_event_open",
        "perf_sys_enter_perf_event_open",
        "perf_event_open",
        false,
    ),
    sys("fexit_bpf", "bpf_sys_exit_bpf", "bpf", true),
    sys("fentry_bpf", "bpf_sys_enter_bpf", "bpf", false),
];

const fn sys(
    fentry: &'static str,
    tracepoint: &'static str,
    name: &'static str,
    exit: bool,
) -> SyscallProbe {
    SyscallProbe {
        fentry,
        tracepoint,
        name,
        exit,
    }
}

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("tracefs")]
    Tracefs(#[from] TracefsError),
    #[error("resolving kernel struct layouts")]
    Btf(#[from] BtfError),
    #[error("parsing kernel BTF for BTF-typed programs")]
    AyaBtf(#[from] aya::BtfError),
    #[error("loading the eBPF object")]
    Load(#[from] aya::EbpfError),
    #[error("program `{0}` is missing from the eBPF object")]
    MissingProgram(&'static str),
    #[error("map `{0}` is missing from the eBPF object or has the wrong type")]
    Map(&'static str),
    #[error("enforcement maps")]
    Enforce(#[from] EnforceError),
    #[error("loading or attaching program `{program}`")]
    Program {
        program: &'static str,
        #[source]
        source: ProgramError,
    },
}

/// BPF-LSM programs and their hooks. All are needed for the `lsm`
/// mechanism: a partial set would deny some vectors and silently not others.
pub const LSM_PROBES: &[(&str, &str)] = &[
    ("lsm_ptrace_access_check", "ptrace_access_check"),
    ("lsm_ptrace_traceme", "ptrace_traceme"),
    ("lsm_bprm_check_security", "bprm_check_security"),
    ("lsm_task_kill", "task_kill"),
    ("lsm_perf_event_open", "perf_event_open"),
    ("lsm_bpf", "bpf"),
];

/// Options for [`load_and_attach`].
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Ring buffer size in bytes (power of two, multiple of the page size).
    pub ring_bytes: u32,
    /// Tgid whose events the kernel drops (the agent itself).
    pub agent_tgid: u32,
    /// Enforce deny rules (and protect the agent) when the kernel allows it.
    pub enforce: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            ring_bytes: DEFAULT_RING_BYTES,
            agent_tgid: std::process::id(),
            enforce: true,
        }
    }
}

/// A loaded, attached object. Dropping it detaches every program.
pub struct Loaded {
    /// Owns the programs and their links.
    pub ebpf: Ebpf,
    pub ring: RingBuf<MapData>,
    /// Set while the agent waits for the kernel to wake it (`wake_if_idle`).
    pub reader_idle: Array<MapData, u32>,
    pub lost: PerCpuArray<MapData, u64>,
    /// Repeat counts of aggregated accesses.
    pub agg: PerCpuHashMap<MapData, AggKey, u64>,
    /// Names of the programs that are attached.
    pub attached: Vec<&'static str>,
    pub tracefs: TracefsState,
    pub offsets: KernelOffsets,
    /// Keeps the decision maps; knows the mechanism in force.
    pub enforcer: Enforcer,
    /// Why this mechanism (for the start record and `status`).
    pub mechanism_reason: String,
}

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/debugmon-ebpf"));

/// Loads the programs into the running kernel and attaches them.
pub fn load_and_attach(opts: &LoadOptions) -> Result<Loaded, LoadError> {
    raise_memlock_limit();
    let tracefs = tracefs::ensure_mounted()?;
    if let TracefsState::MountedByUs(path) = &tracefs {
        info!(path = %path.display(), "tracefs was not mounted; mounted it (tracepoints need it)");
    }

    let kbtf = KernelBtf::open(Path::new(VMLINUX_BTF))?;
    let mut offsets = kbtf.kernel_offsets()?;
    offsets.tp_exec_filename =
        tracefs::field_offset(tracefs.root(), "sched", "sched_process_exec", "filename")?;
    offsets.tp_exec_old_pid =
        tracefs::field_offset(tracefs.root(), "sched", "sched_process_exec", "old_pid")?;
    // Every sys_enter_* record has the same layout (struct syscall_trace_enter),
    // and every sys_exit_* one too: one format file tells the offsets for all.
    // Only the tracepoint fallback of the syscall hooks needs them: a kernel
    // without syscall tracepoints still runs the fentry programs.
    let tp_offset = |name: &str, field: &str| {
        tracefs::field_offset(tracefs.root(), "syscalls", name, field).unwrap_or_else(|e| {
            info!(error = %error_chain(&e), "no syscall tracepoints: the syscall hooks have no fallback");
            agent_common::OFFSET_ABSENT
        })
    };
    offsets.tp_sys_enter_args = tp_offset("sys_enter_ptrace", "request");
    offsets.tp_sys_exit_ret = tp_offset("sys_exit_ptrace", "ret");
    if offsets.task_loginuid == agent_common::OFFSET_ABSENT {
        warn!("kernel built without CONFIG_AUDIT: records carry no auid or session id");
    }

    let btf = aya::Btf::from_sys_fs()?;
    let mut ebpf = EbpfLoader::new()
        .btf(Some(&btf))
        .override_global(OFFSETS_GLOBAL, &offsets, true)
        .override_global(AGENT_TGID_GLOBAL, &opts.agent_tgid, true)
        .map_max_entries(EVENTS_MAP, opts.ring_bytes)
        .load(OBJECT)?;

    let mut attached = Vec::with_capacity(PROBES.len() + SYSCALL_PROBES.len());
    for probe in PROBES {
        match attach(&mut ebpf, &btf, probe) {
            Ok(()) => attached.push(probe.program),
            Err(e) if !probe.required => {
                warn!(program = probe.program, error = %error_chain(&e), "optional probe not attached");
            }
            Err(e) => return Err(e),
        }
    }
    let mut trampoline_refused = None;
    for sp in SYSCALL_PROBES {
        let preferred = sp.preferred();
        let first = match attach(&mut ebpf, &btf, &preferred) {
            Ok(()) => {
                attached.push(preferred.program);
                continue;
            }
            Err(e) => e,
        };
        let fallback = sp.fallback();
        match attach(&mut ebpf, &btf, &fallback) {
            Ok(()) => {
                attached.push(fallback.program);
                trampoline_refused.get_or_insert_with(|| error_chain(&first));
            }
            Err(e) => warn!(
                syscall = sp.name,
                fentry = %error_chain(&first),
                tracepoint = %error_chain(&e),
                "syscall hook not attached: this access vector is not watched"
            ),
        }
    }
    if let Some(why) = trampoline_refused {
        warn!(
            reason = %why,
            "syscall hooks fell back to syscall tracepoints (the kernel refused fentry): every syscall on this host now takes the kernel's syscall-tracing path"
        );
    }

    let (mechanism, mechanism_reason) = if opts.enforce {
        choose_mechanism(&mut ebpf, &btf, &mut attached)
    } else {
        (Mechanism::Off, "disabled by configuration".to_owned())
    };
    match mechanism {
        Mechanism::Lsm => info!("enforcement: BPF-LSM ({mechanism_reason})"),
        Mechanism::Kill => warn!(
            "enforcement: fallback, actors of denied actions are killed at syscall entry ({mechanism_reason})"
        ),
        Mechanism::Off => warn!("enforcement: off ({mechanism_reason}); observing only"),
    }
    let enforcer = Enforcer::new(&mut ebpf, mechanism)?;

    let ring = RingBuf::try_from(
        ebpf.take_map(EVENTS_MAP)
            .ok_or(LoadError::Map(EVENTS_MAP))?,
    )
    .map_err(|_| LoadError::Map(EVENTS_MAP))?;
    let lost = PerCpuArray::try_from(ebpf.take_map(LOST_MAP).ok_or(LoadError::Map(LOST_MAP))?)
        .map_err(|_| LoadError::Map(LOST_MAP))?;
    let agg = PerCpuHashMap::try_from(ebpf.take_map(AGG_MAP).ok_or(LoadError::Map(AGG_MAP))?)
        .map_err(|_| LoadError::Map(AGG_MAP))?;
    let reader_idle = Array::try_from(
        ebpf.take_map(READER_IDLE_MAP)
            .ok_or(LoadError::Map(READER_IDLE_MAP))?,
    )
    .map_err(|_| LoadError::Map(READER_IDLE_MAP))?;
    Ok(Loaded {
        ebpf,
        ring,
        reader_idle,
        lost,
        agg,
        attached,
        tracefs,
        offsets,
        enforcer,
        mechanism_reason,
    })
}

/// BPF-LSM when `bpf` is an active LSM and every LSM program attaches;
/// otherwise the kill fallback, with the reason.
fn choose_mechanism(
    ebpf: &mut Ebpf,
    btf: &aya::Btf,
    attached: &mut Vec<&'static str>,
) -> (Mechanism, String) {
    let list = match mechanism::active_lsms() {
        Ok((list, mounted)) => {
            if mounted {
                info!(
                    "securityfs was not mounted; mounted it at {}",
                    mechanism::SECURITYFS
                );
            }
            list
        }
        Err(e) => {
            return (
                Mechanism::Kill,
                format!("cannot read the active LSM list: {e}"),
            );
        }
    };
    if !mechanism::lsm_list_has_bpf(&list) {
        return (
            Mechanism::Kill,
            format!("`bpf` is not in the active LSM list ({})", list.trim()),
        );
    }
    let mut done = Vec::new();
    for (program, hook) in LSM_PROBES {
        let r = ebpf
            .program_mut(program)
            .ok_or(LoadError::MissingProgram(program))
            .and_then(|p| {
                let wrap = |source| LoadError::Program { program, source };
                let lsm: &mut Lsm = p.try_into().map_err(wrap)?;
                lsm.load(hook, btf).map_err(wrap)?;
                lsm.attach().map_err(wrap)?;
                Ok(())
            });
        match r {
            Ok(()) => done.push(*program),
            Err(e) => {
                // All or nothing: unload what did attach.
                for p in &done {
                    if let Some(prog) = ebpf.program_mut(p)
                        && let Ok(lsm) = <&mut Lsm>::try_from(prog)
                    {
                        let _ = lsm.unload();
                    }
                }
                return (
                    Mechanism::Kill,
                    format!("BPF-LSM program `{program}` refused: {}", error_chain(&e)),
                );
            }
        }
    }
    attached.extend(done);
    (
        Mechanism::Lsm,
        format!("`bpf` is an active LSM ({})", list.trim()),
    )
}

fn attach(ebpf: &mut Ebpf, btf: &aya::Btf, probe: &Probe) -> Result<(), LoadError> {
    let prog = ebpf
        .program_mut(probe.program)
        .ok_or(LoadError::MissingProgram(probe.program))?;
    let wrap = |source| LoadError::Program {
        program: probe.program,
        source,
    };
    match probe.hook {
        Hook::TracePoint { category, name } => {
            let tp: &mut TracePoint = prog.try_into().map_err(wrap)?;
            tp.load().map_err(wrap)?;
            tp.attach(category, name).map_err(wrap)?;
        }
        Hook::BtfTracePoint { name } => {
            let tp: &mut BtfTracePoint = prog.try_into().map_err(wrap)?;
            tp.load(name, btf).map_err(wrap)?;
            tp.attach().map_err(wrap)?;
        }
        Hook::SyscallTracePoint { name, exit } => {
            let tp: &mut TracePoint = prog.try_into().map_err(wrap)?;
            tp.load().map_err(wrap)?;
            let dir = if exit { "exit" } else { "enter" };
            tp.attach("syscalls", &format!("sys_{dir}_{name}"))
                .map_err(wrap)?;
        }
        Hook::Syscall { name, exit: false } => {
            let p: &mut FEntry = prog.try_into().map_err(wrap)?;
            p.load(&format!("{SYSCALL_PREFIX}{name}"), btf)
                .map_err(wrap)?;
            p.attach().map_err(wrap)?;
        }
        Hook::Syscall { name, exit: true } => {
            let p: &mut FExit = prog.try_into().map_err(wrap)?;
            p.load(&format!("{SYSCALL_PREFIX}{name}"), btf)
                .map_err(wrap)?;
            p.attach().map_err(wrap)?;
        }
    }
    Ok(())
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK. Failing to raise
/// it is harmless on newer kernels (memcg accounting), so it is only logged.
fn raise_memlock_limit() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer to a local.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const rlim) } != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "setrlimit(RLIMIT_MEMLOCK) failed");
    }
}

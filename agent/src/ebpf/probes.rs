//! The programs of the object and the hooks they go on. Kernel
//! compatibility lives here, as data: which hooks are required, which
//! optional, which syscall hooks have a tracepoint twin for kernels that
//! refuse BPF trampolines, and which programs make up BPF-LSM enforcement.

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
pub(super) const SYSCALL_PREFIX: &str = "__x64_sys_";
#[cfg(target_arch = "aarch64")]
pub(super) const SYSCALL_PREFIX: &str = "__arm64_sys_";

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
    pub(super) fn preferred(&self) -> Probe {
        Probe {
            program: self.fentry,
            hook: Hook::Syscall {
                name: self.name,
                exit: self.exit,
            },
            required: false,
        }
    }

    pub(super) fn fallback(&self) -> Probe {
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
    // The environment's debug and injection switches: attached before the
    // exec recorder on the same tracepoint, so its event (when there is
    // one) is in the ring before that exec's. Needs bpf_loop (5.17).
    Probe {
        program: "exec_env_sched_process_exec",
        hook: Hook::TracePoint {
            category: "sched",
            name: "sched_process_exec",
        },
        required: false,
    },
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
    // Protection kept in the kernel as processes fork, exec and exit: a
    // protected service's child is protected from its first instruction,
    // a restarted unit from its exec, without waiting for the agent.
    Probe {
        program: "protect_sched_process_fork",
        hook: Hook::BtfTracePoint {
            name: "sched_process_fork",
        },
        required: true,
    },
    Probe {
        program: "protect_sched_process_exec",
        hook: Hook::TracePoint {
            category: "sched",
            name: "sched_process_exec",
        },
        required: true,
    },
    Probe {
        program: "protect_sched_process_exit",
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
    // How runtime debuggers are switched on: a debug-trigger signal sent
    // to another process, a socket starting to listen (from its state
    // change, whatever syscall got it there).
    Probe {
        program: "signal_signal_generate",
        hook: Hook::BtfTracePoint {
            name: "signal_generate",
        },
        required: false,
    },
    Probe {
        program: "listen_inet_sock_set_state",
        hook: Hook::BtfTracePoint {
            name: "inet_sock_set_state",
        },
        required: false,
    },
];

/// Every read or write of another process's mem or environ file as it
/// happens, however the file was opened: io_uring fixed slots, skipped or
/// overflowed completions, descriptors passed or inherited. One program
/// per layout of the tracepoint's arguments, by where its `bool write` is
/// (`KernelOffsets::mmap_lock_write_arg`): each passes over write locks
/// at its first instruction, and a layout not known here gets the program
/// that judges every lock.
pub fn address_space(write_arg: u32) -> Probe {
    Probe {
        program: match write_arg {
            1 => "mem_mmap_lock_start_locking_w1",
            2 => "mem_mmap_lock_start_locking_w2",
            _ => "mem_mmap_lock_start_locking",
        },
        hook: Hook::BtfTracePoint {
            name: "mmap_lock_start_locking",
        },
        required: false,
    }
}

/// The syscall hooks. An exit hook comes before its entry hook: an entry
/// that parks an event for its exit then never runs, even for a moment at
/// start, before that exit is in place. A kernel with neither trampolines
/// nor syscall tracepoints (CONFIG_FTRACE_SYSCALLS) loses that vector,
/// with a warning, not the agent.
pub const SYSCALL_PROBES: &[SyscallProbe] = &[
    sys("fexit_ptrace", "ptrace_sys_exit_ptrace", "ptrace", true),
    sys("fentry_ptrace", "ptrace_sys_enter_ptrace", "ptrace", false),
    sys(
        "fexit_process_vm_readv",
        "mem_sys_exit_process_vm_readv",
        "process_vm_readv",
        true,
    ),
    sys(
        "fentry_process_vm_readv",
        "mem_sys_enter_process_vm_readv",
        "process_vm_readv",
        false,
    ),
    sys(
        "fexit_process_vm_writev",
        "mem_sys_exit_process_vm_writev",
        "process_vm_writev",
        true,
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
        "fexit_pidfd_getfd",
        "mem_sys_exit_pidfd_getfd",
        "pidfd_getfd",
        true,
    ),
    sys(
        "fentry_pidfd_getfd",
        "mem_sys_enter_pidfd_getfd",
        "pidfd_getfd",
        false,
    ),
    sys(
        "fexit_perf_event_open",
        "perf_sys_exit_perf_event_open",
        "perf_event_open",
        true,
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

//! One process acting on another (ptrace, process memory, perf, bpf,
//! pidfd), what the kernel did about it, and the key repeats are counted
//! under.

use crate::{COMM_LEN, Creds, EventHeader, NsIds};

/// How one process reached into another (or into the kernel, for bpf).
/// Discriminants are part of the contract.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessKind {
    /// `ptrace(request, pid, ...)`; `request` holds the request.
    Ptrace = 1,
    /// `process_vm_readv(pid, ...)`.
    VmReadv = 2,
    /// `process_vm_writev(pid, ...)`.
    VmWritev = 3,
    /// An open of `/proc/<pid>/mem` (by that path, or any other way to the
    /// same file, seen at the open's exit); `request` holds the open flags.
    ProcMem = 4,
    /// The same for `/proc/<pid>/environ`.
    ProcEnviron = 5,
    /// `perf_event_open(attr, pid, cpu, ...)`; `request` = attr.type, `arg` = cpu.
    PerfOpen = 6,
    /// `bpf(BPF_PROG_LOAD, ...)`; `request` = prog_type, `name` = prog_name.
    BpfProgLoad = 7,
    /// `pidfd_getfd(pidfd, targetfd, ...)`; `arg` = targetfd.
    PidfdGetfd = 8,
    /// BPF-LSM `ptrace_access_check` denial; `request` = ptrace mode.
    LsmAccess = 9,
    /// BPF-LSM `ptrace_traceme` denial.
    LsmTraceme = 10,
    /// BPF-LSM `bprm_check_security` denial of an exec.
    LsmExec = 11,
    /// BPF-LSM `task_kill` denial of a signal to the agent; `request` = signal.
    LsmKill = 12,
    /// BPF-LSM `perf_event_open` denial; `request` = perf type.
    LsmPerf = 13,
    /// BPF-LSM `bpf` denial; `request` = bpf command.
    LsmBpf = 14,
    /// A traced task exec'd a protected program: refused (BPF-LSM) or
    /// killed before it ran. The event's task is the tracee; `arg` = the
    /// tracer's tgid (the actor of the record).
    ExecTraced = 15,
    /// `bpf(cmd)` on one of the agent's own objects by id: `request` = cmd,
    /// `arg` = the object's [`ObjectKey`](crate::ObjectKey) as `kind << 32 | id`.
    AgentObject = 16,
    /// A signal a runtime uses as a debug trigger (SIGQUIT, SIGUSR1,
    /// SIGUSR2) sent to another process: `request` = signal; the target
    /// is resolved in the kernel.
    Signal = 17,
    /// A TCP socket started listening: `request` = port, `arg` = address
    /// family, `name` = the bound address (4 or 16 bytes).
    Listen = 18,
    /// An open of the kernel's memory: `/proc/kcore` (`arg` = 0),
    /// `/dev/mem` (1), `/dev/kmem` (2), `/dev/port` (4); `request` = flags.
    KernelMem = 19,
    /// An open for writing of `/etc/ld.so.preload`; `request` = flags.
    PreloadWrite = 20,
    /// An open of `/proc/<pid>/map_files/...` (by that path): a file
    /// another process has mapped; `request` = flags.
    ProcMapFiles = 21,
    /// An open of a memfd through `/proc/<pid>/fd/<n>`: an anonymous
    /// file of another process; `request` = flags.
    ProcFdMemfd = 22,
}

impl AccessKind {
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Ptrace),
            2 => Some(Self::VmReadv),
            3 => Some(Self::VmWritev),
            4 => Some(Self::ProcMem),
            5 => Some(Self::ProcEnviron),
            6 => Some(Self::PerfOpen),
            7 => Some(Self::BpfProgLoad),
            8 => Some(Self::PidfdGetfd),
            9 => Some(Self::LsmAccess),
            10 => Some(Self::LsmTraceme),
            11 => Some(Self::LsmExec),
            12 => Some(Self::LsmKill),
            13 => Some(Self::LsmPerf),
            14 => Some(Self::LsmBpf),
            15 => Some(Self::ExecTraced),
            16 => Some(Self::AgentObject),
            17 => Some(Self::Signal),
            18 => Some(Self::Listen),
            19 => Some(Self::KernelMem),
            20 => Some(Self::PreloadWrite),
            21 => Some(Self::ProcMapFiles),
            22 => Some(Self::ProcFdMemfd),
            _ => None,
        }
    }
}

/// `AccessEvent.flags2` bits.
pub mod access_flags {
    /// `ret` holds the syscall's return value (the event was sent at exit).
    pub const HAS_RET: u32 = 1 << 0;
    /// `count` is an aggregate over a window, not a single call.
    pub const AGGREGATE: u32 = 1 << 1;
    /// `target_host_pid` was resolved in the kernel.
    pub const TARGET_RESOLVED: u32 = 1 << 2;
    /// The open was an io_uring request (IORING_OP_OPENAT/OPENAT2), seen
    /// at its completion.
    pub const IO_URING: u32 = 1 << 3;
    /// Kernel-internal, never sent: kill the actor when the parked
    /// syscall returns successfully, under rule `rule`.
    pub const KILL_AT_EXIT: u32 = 1 << 4;
    /// Kernel-internal, never sent: the parked event turned out to be of
    /// no interest (another process's descriptor that is no memfd).
    pub const DROP: u32 = 1 << 6;
    /// Seen as the target's memory was about to be read or written (its
    /// address space locked by the actor), not when the file was opened:
    /// whatever way the file was opened, passed or reached.
    pub const AT_ACCESS: u32 = 1 << 5;
    /// The access changes the target ([`ops::WRITE`](crate::ops::WRITE)):
    /// a read-only grant or exemption does not cover it.
    pub const WRITES: u32 = 1 << 7;
}

/// One process acting on another: ptrace, process memory, profiling, bpf.
/// The subject (`header`) is the actor.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccessEvent {
    pub header: EventHeader,
    /// An [`AccessKind`] discriminant.
    pub access: u32,
    /// Target pid as the actor named it (in the actor's pid namespace); 0 when none.
    pub target_pid: u32,
    /// Kind-specific: ptrace request, open flags, perf attr.type, bpf prog_type.
    pub request: u64,
    /// Kind-specific: ptrace addr, perf cpu, pidfd_getfd targetfd.
    pub arg: u64,
    /// Syscall return value when `access_flags::HAS_RET` is set.
    pub ret: i64,
    /// Calls this event stands for (1, or more for an aggregate).
    pub count: u32,
    /// Host pid of the target when the kernel could resolve it (pidfd), else 0.
    pub target_host_pid: u32,
    pub flags2: u32,
    pub ppid: u32,
    pub creds: Creds,
    pub ns: NsIds,
    pub cgroup_id: u64,
    pub comm: [u8; COMM_LEN],
    /// bpf program name; empty otherwise.
    pub name: [u8; COMM_LEN],
    /// Kernel rule slot that decided ([`Enforcement`] other than `None`).
    pub rule: u32,
    /// A [`Enforcement`] discriminant.
    pub enforcement: u32,
}

layout!(
    AccessEvent,
    168;
    header: EventHeader,
    access: u32,
    target_pid: u32,
    request: u64,
    arg: u64,
    ret: i64,
    count: u32,
    target_host_pid: u32,
    flags2: u32,
    ppid: u32,
    creds: Creds,
    ns: NsIds,
    cgroup_id: u64,
    comm: [u8; COMM_LEN],
    name: [u8; COMM_LEN],
    rule: u32,
    enforcement: u32,
);

/// What the kernel did about an access. Discriminants are part of the contract.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enforcement {
    /// Observed only.
    None = 0,
    /// Refused with -EPERM by a BPF-LSM hook: the action did not happen.
    DeniedLsm = 1,
    /// No BPF-LSM: the actor was sent SIGKILL at the syscall's entry.
    Killed = 2,
}

impl Enforcement {
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            0 => Some(Self::None),
            1 => Some(Self::DeniedLsm),
            2 => Some(Self::Killed),
            _ => None,
        }
    }
}

/// Key of [`AGG_MAP`](crate::AGG_MAP): one tracer, one target, one kind of access.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AggKey {
    pub actor_tgid: u32,
    /// 0 for refused attempts: they are counted per actor whatever they
    /// named (a loop over guessed pids is one count, not one per pid).
    pub target_pid: u32,
    pub access: u32,
    /// [`agg_outcome`]: whether these calls went through.
    pub outcome: u32,
    pub request: u64,
}

/// [`AggKey::outcome`].
pub mod agg_outcome {
    /// The calls went through (or their result is not known).
    pub const DONE: u32 = 0;
    /// The kernel refused them on its own: attempts.
    pub const REFUSED: u32 = 1;
}

layout!(
    AggKey,
    24;
    actor_tgid: u32,
    target_pid: u32,
    access: u32,
    outcome: u32,
    request: u64,
);

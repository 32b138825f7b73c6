//! The contract between the kernel programs (`agent-ebpf`) and the agent:
//! `#[repr(C)]` wire types carried by the ring buffer, the read-only globals
//! the agent fills in at load time, and the names of the maps both sides use.
//!
//! Rules (house style): no `bool`, no pointers, no implicit padding; every
//! layout is pinned by a compile-time size assertion; discriminants are
//! explicit and never reused once retired.
#![no_std]

use core::mem::size_of;

/// Ring buffer carrying every event to userspace.
pub const EVENTS_MAP: &str = "EVENTS";
/// Per-CPU array of `u64` counters: events dropped in the kernel, indexed by [`EventKind`].
pub const LOST_MAP: &str = "LOST";
/// One `u32`: non-zero while the agent waits to be woken (see the agent's read loop).
pub const READER_IDLE_MAP: &str = "READER_IDLE";
/// Per-CPU scratch space used to assemble variable-length exec events.
pub const EXEC_SCRATCH_MAP: &str = "EXEC_SCRATCH";
/// Name of the global holding [`KernelOffsets`].
pub const OFFSETS_GLOBAL: &str = "OFFSETS";
/// Name of the global holding the agent's own tgid (its events are filtered out in the kernel).
pub const AGENT_TGID_GLOBAL: &str = "AGENT_TGID";

/// Bytes of the executed path copied per exec: PATH_MAX, so a path is never cut.
pub const FILENAME_CAP: usize = 4096;
/// Bytes of argv copied per exec (at least 16 arguments and 1 KiB, as the contract asks).
pub const ARGV_CAP: usize = 4096;
/// Bytes of the working directory's path copied per exec. A deeper or
/// longer cwd is not cut: the agent reads it from `/proc` instead.
pub const CWD_CAP: usize = 2048;
/// Most components of the working directory's path walked in the kernel.
pub const CWD_DEPTH: usize = 32;
/// Room for one path component and its NUL (`NAME_MAX` + 1).
pub const CWD_NAME_ROOM: usize = 256;
/// Length of `task_struct.comm`.
pub const COMM_LEN: usize = 16;
/// Bytes of the controlling terminal's name copied (`tty_struct.name` is 64).
pub const TTY_LEN: usize = 32;
/// Default ring buffer size in bytes (power of two, multiple of the page size).
pub const DEFAULT_RING_BYTES: u32 = 4 * 1024 * 1024;

/// Sentinel for an offset the running kernel does not have (e.g. `loginuid` without CONFIG_AUDIT).
pub const OFFSET_ABSENT: u32 = u32::MAX;

/// Kinds of event on the wire. Discriminants are part of the contract.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Exec = 1,
    Fork = 2,
    Exit = 3,
    Access = 4,
}

/// Number of slots in [`LOST_MAP`]: one per [`EventKind`] discriminant, slot 0 unused.
pub const LOST_SLOTS: u32 = 5;

impl EventKind {
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Exec),
            2 => Some(Self::Fork),
            3 => Some(Self::Exit),
            4 => Some(Self::Access),
            _ => None,
        }
    }
}

/// `EventHeader.flags` bits.
pub mod flags {
    /// argv was longer than [`crate::ARGV_CAP`]; only the first part was copied.
    pub const ARGV_TRUNCATED: u32 = 1 << 0;
    /// Reading argv from the new process image failed; argv is empty.
    pub const ARGV_READ_FAILED: u32 = 1 << 1;
    /// Reading the executed path failed; the path is empty.
    pub const FILENAME_READ_FAILED: u32 = 1 << 2;
    /// The kernel has no `loginuid`/`sessionid` (built without CONFIG_AUDIT).
    pub const NO_AUDIT_IDS: u32 = 1 << 3;
    /// Some credential read failed; uid fields may be incomplete.
    pub const CREDS_READ_FAILED: u32 = 1 << 4;
    /// The working directory was walked up to its mount namespace's root
    /// (or, for a lazily unmounted tree, to that detached mount's root, as
    /// `readlink` shows it): `cwd_len` bytes of its names follow argv.
    /// Without it the walk did not finish (too deep, too long, a failed
    /// read) and `cwd_len` is 0.
    pub const CWD_RESOLVED: u32 = 1 << 5;
    /// The working directory was removed (`rmdir`) while still in use.
    pub const CWD_DELETED: u32 = 1 << 6;
}

/// First member of every event.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    /// An [`EventKind`] discriminant.
    pub kind: u32,
    /// [`flags`] bits.
    pub flags: u32,
    /// `CLOCK_BOOTTIME` nanoseconds when the event happened.
    pub ktime_ns: u64,
    /// Thread id of the subject task.
    pub pid: u32,
    /// Process id (thread-group id) of the subject task.
    pub tgid: u32,
    /// `task_struct.start_boottime` of the subject task: with `tgid` it names
    /// one process across pid reuse.
    pub start_ns: u64,
}
const _: () = assert!(size_of::<EventHeader>() == 32);

/// Identity of the task, read from its credentials and audit fields.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    /// Audit login uid (`u32::MAX` when unset).
    pub auid: u32,
    /// Audit session id (`u32::MAX` when unset).
    pub sessionid: u32,
}
const _: () = assert!(size_of::<Creds>() == 24);

/// Fixed part of an exec event. On the wire it is followed by `filename_len`
/// bytes of path, then `argv_len` bytes of NUL-separated arguments, then
/// `cwd_len` bytes of the working directory's names, each NUL-terminated,
/// the innermost first (`/srv/app` is `app\0srv\0`; `/` is empty).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecEvent {
    pub header: EventHeader,
    pub ppid: u32,
    /// Thread id that called execve (differs from `header.pid` when a
    /// non-leader thread exec'd).
    pub old_pid: u32,
    pub creds: Creds,
    pub cgroup_id: u64,
    /// Bytes of path following this struct (no trailing NUL).
    pub filename_len: u32,
    /// Bytes of argv following the path.
    pub argv_len: u32,
    /// Size of the whole argv area in the new process (`mm.arg_end - mm.arg_start`).
    pub argv_total_len: u32,
    /// Bytes of working-directory names following argv (see [`flags::CWD_RESOLVED`]).
    pub cwd_len: u32,
    pub ns: NsIds,
    pub comm: [u8; COMM_LEN],
    /// Controlling terminal name (`pts/3`), empty when none.
    pub tty: [u8; TTY_LEN],
}
const _: () = assert!(size_of::<ExecEvent>() == 152);

/// Largest exec event on the wire.
pub const EXEC_EVENT_MAX: usize = size_of::<ExecEvent>() + FILENAME_CAP + ARGV_CAP + CWD_CAP;

/// Per-CPU scratch space where an exec event is assembled before it is
/// copied, trimmed to its real length, into the ring buffer. The slack
/// after the cwd area lets each name be copied with a constant bound.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecScratch {
    pub event: ExecEvent,
    pub data: [u8; FILENAME_CAP + ARGV_CAP + CWD_CAP + CWD_NAME_ROOM],
}
const _: () = assert!(size_of::<ExecScratch>() == EXEC_EVENT_MAX + CWD_NAME_ROOM);

/// A new process (threads are not reported: they share their process's identity).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForkEvent {
    /// Subject: the child.
    pub header: EventHeader,
    pub parent_tgid: u32,
    pub _pad: u32,
    pub parent_start_ns: u64,
    pub creds: Creds,
    pub cgroup_id: u64,
    pub ns: NsIds,
    pub comm: [u8; COMM_LEN],
}
const _: () = assert!(size_of::<ForkEvent>() == 112);

/// The last thread of a process exited.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitEvent {
    pub header: EventHeader,
    /// `task_struct.exit_code` (wait status encoding).
    pub exit_code: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<ExitEvent>() == 40);

/// Namespace identity of a task: which pid, user and mount namespaces it
/// lives in (their inode numbers, as `ls -l /proc/PID/ns` shows) and its pid
/// as seen inside its own pid namespace.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NsIds {
    pub pid_ns: u32,
    pub user_ns: u32,
    pub mnt_ns: u32,
    /// Process id inside `pid_ns` (equals the host pid in the root namespace).
    pub ns_pid: u32,
}
const _: () = assert!(size_of::<NsIds>() == 16);

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
    /// Kernel rule slot that decided ([`Decision`] other than `None`).
    pub rule: u32,
    /// A [`Decision`] discriminant.
    pub decision: u32,
}
const _: () = assert!(size_of::<AccessEvent>() == 168);

/// What the kernel did about an access. Discriminants are part of the contract.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Observed only.
    None = 0,
    /// Refused with -EPERM by a BPF-LSM hook: the action did not happen.
    DeniedLsm = 1,
    /// No BPF-LSM: the actor was sent SIGKILL at the syscall's entry.
    Killed = 2,
}

impl Decision {
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            0 => Some(Self::None),
            1 => Some(Self::DeniedLsm),
            2 => Some(Self::Killed),
            _ => None,
        }
    }
}

/// Enforcement mechanism in force, slot 0 of [`ENFORCE_MAP`].
pub mod enforce_mode {
    /// Observe only.
    pub const OFF: u32 = 0;
    /// BPF-LSM hooks deny with -EPERM.
    pub const LSM: u32 = 1;
    /// Syscall-entry SIGKILL of the actor (no BPF-LSM on this kernel).
    pub const KILL: u32 = 2;
}

/// Operations a kernel rule can deny (`KRule.ops` bits).
pub mod ops {
    /// ptrace attach/seize and every PTRACE_MODE_ATTACH access: process_vm_*,
    /// /proc/<pid>/mem, pidfd_getfd.
    pub const ATTACH: u32 = 1 << 0;
    /// PTRACE_TRACEME by a protected process (anti-debug).
    pub const TRACEME: u32 = 1 << 1;
    /// exec of a listed binary (bprm_check_security).
    pub const EXEC: u32 = 1 << 2;
    /// perf_event_open by a non-exempt actor.
    pub const PERF: u32 = 1 << 3;
    /// bpf(BPF_PROG_LOAD) by a non-exempt actor.
    pub const BPF: u32 = 1 << 4;
}

/// One compiled deny rule, indexed by its slot in [`KRULES_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KRule {
    /// [`ops`] bits this rule denies.
    pub ops: u32,
    /// [`krule_flags`] bits.
    pub flags: u32,
}
const _: () = assert!(size_of::<KRule>() == 8);

pub mod krule_flags {
    /// The slot holds a rule.
    pub const ENABLED: u32 = 1 << 0;
    /// An unexpired grant for the actor lets the action through.
    pub const HONOR_GRANTS: u32 = 1 << 1;
    /// The rule applies to every actor (perf/bpf rules have no target).
    pub const ACTOR_ONLY: u32 = 1 << 2;
}

/// Exemption of one actor (login uid, else uid) from one rule slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ExemptKey {
    pub slot: u32,
    pub uid: u32,
}

/// Grant scope kinds in [`GrantKey::scope`].
pub mod grant_scope {
    pub const ANY: u32 = 0;
    /// `value` is a cgroup id (a systemd unit).
    pub const CGROUP: u32 = 1;
    /// `value` is a tgid.
    pub const TGID: u32 = 2;
}

/// A grant for one actor (login uid, else uid) over one scope; the map value
/// is the expiry in `CLOCK_BOOTTIME` ns, so it ends in the kernel, on time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GrantKey {
    pub uid: u32,
    pub scope: u32,
    pub value: u64,
}
const _: () = assert!(size_of::<GrantKey>() == 16);

/// Identity of an executable file: inode and device.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InodeKey {
    pub ino: u64,
    pub dev: u32,
    pub _pad: u32,
}

pub const KRULES_MAP: &str = "KRULES";
pub const KRULES_MAX: u32 = 256;
pub const PROTECT_TGID_MAP: &str = "PROTECT_TGID";
pub const PROTECT_CGROUP_MAP: &str = "PROTECT_CGROUP";
pub const PROTECT_COMM_MAP: &str = "PROTECT_COMM";
pub const EXEMPT_MAP: &str = "EXEMPT";
pub const GRANTS_MAP: &str = "GRANTS";
pub const EXEC_DENY_MAP: &str = "EXEC_DENY";
/// Array map whose slot 0 holds the [`enforce_mode`] in force.
pub const ENFORCE_MAP: &str = "ENFORCE";

/// Key of [`AGG_MAP`]: one tracer, one target, one kind of access.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AggKey {
    pub actor_tgid: u32,
    pub target_pid: u32,
    pub access: u32,
    pub _pad: u32,
    pub request: u64,
}
const _: () = assert!(size_of::<AggKey>() == 24);

/// LRU hash `AggKey -> u64`: calls after the first, which was sent at once.
pub const AGG_MAP: &str = "AGG";
/// Size of [`AGG_MAP`].
pub const AGG_ENTRIES: u32 = 16_384;
/// Per-thread access events waiting for their syscall's exit.
pub const PENDING_MAP: &str = "PENDING";

/// Kernel layout facts resolved by the agent from the running kernel's BTF
/// (and the tracepoint format files) at load time, so no offset is
/// hard-wired for one kernel build. [`OFFSET_ABSENT`] marks a missing field.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    pub task_pid: u32,
    pub task_tgid: u32,
    pub task_real_parent: u32,
    pub task_cred: u32,
    pub task_loginuid: u32,
    pub task_sessionid: u32,
    pub task_start_boottime: u32,
    pub task_mm: u32,
    pub task_signal: u32,
    pub task_exit_code: u32,
    pub task_comm: u32,
    pub cred_uid: u32,
    pub cred_gid: u32,
    pub cred_euid: u32,
    pub cred_egid: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub signal_live: u32,
    /// `task_struct.thread_pid` (struct pid *).
    pub task_thread_pid: u32,
    /// `struct pid.level` and `struct pid.numbers` (array of struct upid).
    pub pid_level: u32,
    pub pid_numbers: u32,
    /// `sizeof(struct upid)`, `upid.nr`, `upid.ns`.
    pub upid_size: u32,
    pub upid_nr: u32,
    pub upid_ns: u32,
    /// `pid_namespace.ns` + `ns_common.inum`, folded into one offset.
    pub pidns_inum: u32,
    /// `cred.user_ns`, and `user_namespace.ns` + `ns_common.inum` folded.
    pub cred_user_ns: u32,
    pub userns_inum: u32,
    /// `task_struct.nsproxy`, `nsproxy.mnt_ns`, `mnt_namespace.ns` + `inum` folded.
    pub task_nsproxy: u32,
    pub nsproxy_mnt_ns: u32,
    pub mntns_inum: u32,
    /// `signal_struct.tty` and `tty_struct.name`.
    pub signal_tty: u32,
    pub tty_name: u32,
    /// `task_struct.files`, `files_struct.fdt`, `fdtable.max_fds`, `fdtable.fd`,
    /// `file.private_data`: resolve a pidfd to its `struct pid`.
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdt_max_fds: u32,
    pub fdt_fd: u32,
    pub file_private_data: u32,
    /// Since 6.9 pidfds live on pidfs and keep their `struct pid` in the
    /// inode: 1 = read `file.f_inode->i_private`, 0 = `file.private_data`.
    pub pidfd_in_inode: u32,
    pub file_f_inode: u32,
    pub inode_i_private: u32,
    /// `task_struct.cgroups`, `css_set.dfl_cgrp`, `cgroup.kn`, `kernfs_node.id`:
    /// the cgroup v2 id of any task (not only the current one).
    pub task_cgroups: u32,
    pub css_set_dfl_cgrp: u32,
    pub cgroup_kn: u32,
    pub kernfs_node_id: u32,
    /// `linux_binprm.file`, `inode.i_ino`, `inode.i_sb`, `super_block.s_dev`.
    pub bprm_file: u32,
    pub inode_i_ino: u32,
    pub inode_i_sb: u32,
    pub sb_s_dev: u32,
    /// Offset of the first argument in a `syscalls/sys_enter_*` record, and
    /// of `ret` in a `syscalls/sys_exit_*` record.
    pub tp_sys_enter_args: u32,
    pub tp_sys_exit_ret: u32,
    /// Offsets in `struct pt_regs` of a syscall's six arguments, as the
    /// syscall functions (`__x64_sys_*`) the fentry programs hook get them.
    pub sys_args: [u32; 6],
    /// Offset of the `__data_loc char[] filename` field in the
    /// `sched/sched_process_exec` tracepoint record.
    pub tp_exec_filename: u32,
    /// Offset of `old_pid` in the same record.
    pub tp_exec_old_pid: u32,
    /// The working directory: `task_struct.fs`, `fs_struct.pwd` and
    /// `path.{mnt,dentry}`.
    pub task_fs: u32,
    pub fs_pwd: u32,
    pub path_mnt: u32,
    pub path_dentry: u32,
    /// `dentry.d_parent`; `dentry.d_name` + `qstr.name` folded;
    /// `dentry.d_hash` + `hlist_bl_node.pprev` folded (null once unlinked).
    pub dentry_d_parent: u32,
    pub dentry_name: u32,
    pub dentry_hash_pprev: u32,
    /// `vfsmount.mnt_root`; `mount.mnt` (the embedded vfsmount),
    /// `mount.mnt_parent`, `mount.mnt_mountpoint`: crossing mount points.
    pub vfsmount_mnt_root: u32,
    pub mount_mnt: u32,
    pub mount_mnt_parent: u32,
    pub mount_mnt_mountpoint: u32,
    /// An opened file that is a process's memory or environment, however
    /// its path was spelled: `file.f_path` + `path.dentry` folded,
    /// `file.f_flags`, `dentry.d_name` + `qstr.len` folded, `dentry.d_sb`,
    /// `super_block.s_magic`; and from a procfs inode to its process:
    /// `proc_inode.vfs_inode`, `proc_inode.pid`, `pid.tasks` (its first
    /// list is PIDTYPE_PID's) and `task_struct.pid_links`.
    pub file_f_path_dentry: u32,
    pub file_f_flags: u32,
    pub dentry_name_len: u32,
    pub dentry_d_sb: u32,
    pub sb_s_magic: u32,
    pub proc_inode_vfs_inode: u32,
    pub proc_inode_pid: u32,
    pub pid_tasks: u32,
    pub task_pid_links: u32,
    /// io_uring opens: `io_kiocb.opcode`, `io_kiocb.cqe` + `io_cqe.res`
    /// folded (the result the completion posts), `io_kiocb.cmd` (the
    /// request's own data, a `struct io_open` for an open) and
    /// `io_open.file_slot` (non-zero: the file went to a fixed slot, no
    /// descriptor).
    pub io_kiocb_opcode: u32,
    pub io_kiocb_res: u32,
    pub io_kiocb_cmd: u32,
    pub io_open_file_slot: u32,
}
const _: () = assert!(size_of::<KernelOffsets>() == 328);

impl KernelOffsets {
    /// All fields absent: the programs then read nothing and flag the event.
    pub const ABSENT: Self = Self {
        task_pid: OFFSET_ABSENT,
        task_tgid: OFFSET_ABSENT,
        task_real_parent: OFFSET_ABSENT,
        task_cred: OFFSET_ABSENT,
        task_loginuid: OFFSET_ABSENT,
        task_sessionid: OFFSET_ABSENT,
        task_start_boottime: OFFSET_ABSENT,
        task_mm: OFFSET_ABSENT,
        task_signal: OFFSET_ABSENT,
        task_exit_code: OFFSET_ABSENT,
        task_comm: OFFSET_ABSENT,
        cred_uid: OFFSET_ABSENT,
        cred_gid: OFFSET_ABSENT,
        cred_euid: OFFSET_ABSENT,
        cred_egid: OFFSET_ABSENT,
        mm_arg_start: OFFSET_ABSENT,
        mm_arg_end: OFFSET_ABSENT,
        signal_live: OFFSET_ABSENT,
        task_thread_pid: OFFSET_ABSENT,
        pid_level: OFFSET_ABSENT,
        pid_numbers: OFFSET_ABSENT,
        upid_size: OFFSET_ABSENT,
        upid_nr: OFFSET_ABSENT,
        upid_ns: OFFSET_ABSENT,
        pidns_inum: OFFSET_ABSENT,
        cred_user_ns: OFFSET_ABSENT,
        userns_inum: OFFSET_ABSENT,
        task_nsproxy: OFFSET_ABSENT,
        nsproxy_mnt_ns: OFFSET_ABSENT,
        mntns_inum: OFFSET_ABSENT,
        signal_tty: OFFSET_ABSENT,
        tty_name: OFFSET_ABSENT,
        task_files: OFFSET_ABSENT,
        files_fdt: OFFSET_ABSENT,
        fdt_max_fds: OFFSET_ABSENT,
        fdt_fd: OFFSET_ABSENT,
        file_private_data: OFFSET_ABSENT,
        pidfd_in_inode: 0,
        file_f_inode: OFFSET_ABSENT,
        inode_i_private: OFFSET_ABSENT,
        task_cgroups: OFFSET_ABSENT,
        css_set_dfl_cgrp: OFFSET_ABSENT,
        cgroup_kn: OFFSET_ABSENT,
        kernfs_node_id: OFFSET_ABSENT,
        bprm_file: OFFSET_ABSENT,
        inode_i_ino: OFFSET_ABSENT,
        inode_i_sb: OFFSET_ABSENT,
        sb_s_dev: OFFSET_ABSENT,
        tp_sys_enter_args: OFFSET_ABSENT,
        tp_sys_exit_ret: OFFSET_ABSENT,
        sys_args: [OFFSET_ABSENT; 6],
        tp_exec_filename: OFFSET_ABSENT,
        tp_exec_old_pid: OFFSET_ABSENT,
        task_fs: OFFSET_ABSENT,
        fs_pwd: OFFSET_ABSENT,
        path_mnt: OFFSET_ABSENT,
        path_dentry: OFFSET_ABSENT,
        dentry_d_parent: OFFSET_ABSENT,
        dentry_name: OFFSET_ABSENT,
        dentry_hash_pprev: OFFSET_ABSENT,
        vfsmount_mnt_root: OFFSET_ABSENT,
        mount_mnt: OFFSET_ABSENT,
        mount_mnt_parent: OFFSET_ABSENT,
        mount_mnt_mountpoint: OFFSET_ABSENT,
        file_f_path_dentry: OFFSET_ABSENT,
        file_f_flags: OFFSET_ABSENT,
        dentry_name_len: OFFSET_ABSENT,
        dentry_d_sb: OFFSET_ABSENT,
        sb_s_magic: OFFSET_ABSENT,
        proc_inode_vfs_inode: OFFSET_ABSENT,
        proc_inode_pid: OFFSET_ABSENT,
        pid_tasks: OFFSET_ABSENT,
        task_pid_links: OFFSET_ABSENT,
        io_kiocb_opcode: OFFSET_ABSENT,
        io_kiocb_res: OFFSET_ABSENT,
        io_kiocb_cmd: OFFSET_ABSENT,
        io_open_file_slot: OFFSET_ABSENT,
    };
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: all of these are `#[repr(C)]`, `Copy`, contain only integers
    // and byte arrays, and have no padding (pinned by the size asserts).
    unsafe impl aya::Pod for super::KernelOffsets {}
    unsafe impl aya::Pod for super::EventHeader {}
    unsafe impl aya::Pod for super::AggKey {}
    unsafe impl aya::Pod for super::KRule {}
    unsafe impl aya::Pod for super::ExemptKey {}
    unsafe impl aya::Pod for super::GrantKey {}
    unsafe impl aya::Pod for super::InodeKey {}
}

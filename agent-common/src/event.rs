//! The process-lifecycle events on the wire: the header every event
//! starts with, exec (followed by its variable-length path, argv and
//! working directory), fork and exit, and the identity fields they carry.

use core::mem::size_of;

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

/// Kinds of event on the wire. Discriminants are part of the contract.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Exec = 1,
    Fork = 2,
    Exit = 3,
    Access = 4,
    /// The debug and injection switches in a new program's environment.
    ExecEnv = 5,
}

impl EventKind {
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Exec),
            2 => Some(Self::Fork),
            3 => Some(Self::Exit),
            4 => Some(Self::Access),
            5 => Some(Self::ExecEnv),
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

layout!(
    EventHeader,
    32;
    kind: u32,
    flags: u32,
    ktime_ns: u64,
    pid: u32,
    tgid: u32,
    start_ns: u64,
);

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

layout!(
    Creds,
    24;
    uid: u32,
    gid: u32,
    euid: u32,
    egid: u32,
    auid: u32,
    sessionid: u32,
);

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
    /// The file the kernel runs (whatever path or name it was reached by):
    /// inode, device (kernel `dev_t`), owner and mode.
    pub exe_ino: u64,
    pub exe_dev: u32,
    pub exe_uid: u32,
    pub exe_mode: u32,
    pub _pad: u32,
}

layout!(
    ExecEvent,
    176;
    header: EventHeader,
    ppid: u32,
    old_pid: u32,
    creds: Creds,
    cgroup_id: u64,
    filename_len: u32,
    argv_len: u32,
    argv_total_len: u32,
    cwd_len: u32,
    ns: NsIds,
    comm: [u8; COMM_LEN],
    tty: [u8; TTY_LEN],
    exe_ino: u64,
    exe_dev: u32,
    exe_uid: u32,
    exe_mode: u32,
    _pad: u32,
);

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

layout!(
    ExecScratch,
    EXEC_EVENT_MAX + CWD_NAME_ROOM;
    event: ExecEvent,
    data: [u8; FILENAME_CAP + ARGV_CAP + CWD_CAP + CWD_NAME_ROOM],
);

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

layout!(
    ForkEvent,
    112;
    header: EventHeader,
    parent_tgid: u32,
    _pad: u32,
    parent_start_ns: u64,
    creds: Creds,
    cgroup_id: u64,
    ns: NsIds,
    comm: [u8; COMM_LEN],
);

/// The last thread of a process exited.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitEvent {
    pub header: EventHeader,
    /// `task_struct.exit_code` (wait status encoding).
    pub exit_code: u32,
    pub _pad: u32,
}

layout!(
    ExitEvent,
    40;
    header: EventHeader,
    exit_code: u32,
    _pad: u32,
);

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

layout!(
    NsIds,
    16;
    pid_ns: u32,
    user_ns: u32,
    mnt_ns: u32,
    ns_pid: u32,
);

/// Bytes of selected environment variables sent per exec.
pub const ENV_CAP: usize = 1024;

/// Bytes of one variable copied (longer values are cut and flagged).
pub const ENV_VAR_ROOM: usize = 256;

/// Names (their first bytes) whose variables an exec reports, set by the
/// agent: debug and injection switches (`LD_PRELOAD`, `JAVA_TOOL_OPTIONS`,
/// `NODE_OPTIONS`, ...).
pub const ENV_NAMES: usize = 16;

/// One name to look for: the first eight bytes of `NAME=` (the `=`
/// included when the name is shorter), under `mask`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnvName {
    pub prefix: u64,
    pub mask: u64,
}

layout!(
    EnvName,
    16;
    prefix: u64,
    mask: u64,
);

/// `ExecEnvEvent.flags` bits.
pub mod env_flags {
    /// A variable was longer than [`crate::ENV_VAR_ROOM`] and was cut.
    pub const VALUE_CUT: u32 = 1 << 0;
    /// More matched than [`crate::ENV_CAP`] holds.
    pub const FULL: u32 = 1 << 1;
    /// The scan stopped before the end of the environment (a very long one).
    pub const INCOMPLETE: u32 = 1 << 2;
}

/// The variables of a new program's environment whose names the agent
/// asked for, as `NAME=VALUE\0` strings. Sent just before the exec event
/// of the same process, and only when one matched (or the scan could not
/// finish).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecEnvEvent {
    pub header: EventHeader,
    /// Bytes of `data` used.
    pub len: u32,
    /// [`env_flags`].
    pub flags: u32,
    pub data: [u8; ENV_CAP + ENV_VAR_ROOM],
}

layout!(
    ExecEnvEvent,
    size_of::<EventHeader>() + 8 + ENV_CAP + ENV_VAR_ROOM;
    header: EventHeader,
    len: u32,
    flags: u32,
    data: [u8; ENV_CAP + ENV_VAR_ROOM],
);

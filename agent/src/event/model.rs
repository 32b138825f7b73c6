//! Owned events, as decoded from the wire. Byte strings stay bytes here:
//! paths and arguments need not be UTF-8, and the record builder decides how
//! to render them.

use agent_common::{AccessKind, Creds, Enforcement, NsIds};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Exec(ExecInfo),
    Fork(ForkInfo),
    Exit(ExitInfo),
    Access(AccessInfo),
    /// Sent just before its process's exec event.
    ExecEnv(EnvInfo),
}

/// The variables of a new program's environment the kernel was asked to
/// report (debug and injection switches), as `NAME=VALUE` byte strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvInfo {
    pub ktime_ns: u64,
    pub tgid: u32,
    pub start_ns: u64,
    pub vars: Vec<Vec<u8>>,
    /// `agent_common::env_flags`.
    pub flags: u32,
}

impl Event {
    /// `CLOCK_BOOTTIME` ns at which the event happened.
    pub fn ktime_ns(&self) -> u64 {
        match self {
            Self::Exec(e) => e.ktime_ns,
            Self::Fork(f) => f.ktime_ns,
            Self::Exit(x) => x.ktime_ns,
            Self::Access(a) => a.ktime_ns,
            Self::ExecEnv(e) => e.ktime_ns,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecInfo {
    pub ktime_ns: u64,
    pub flags: u32,
    pub pid: u32,
    pub tgid: u32,
    pub start_ns: u64,
    pub ppid: u32,
    pub old_pid: u32,
    pub creds: Creds,
    pub cgroup_id: u64,
    pub ns: NsIds,
    pub comm: Vec<u8>,
    /// Controlling terminal (`pts/3`), empty when none.
    pub tty: Vec<u8>,
    pub filename: Vec<u8>,
    /// Arguments as copied; with [`ExecInfo::argv_truncated`] the last one may be cut.
    pub argv: Vec<Vec<u8>>,
    pub argv_truncated: bool,
    /// Size of the whole argv area in the process, copied or not.
    pub argv_total_len: u32,
    /// The file the kernel runs, by identity.
    pub exe_file: ExeFile,
    /// Working directory as the kernel walked it at the exec, with
    /// ` (deleted)` appended as `readlink` does; `None` when the walk did
    /// not finish (the agent then reads `/proc/PID/cwd`).
    pub cwd: Option<Vec<u8>>,
}

/// An executable file as the kernel knows it: inode and kernel device (what
/// it is), owner and mode (who could have changed it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExeFile {
    pub ino: u64,
    pub dev: u32,
    pub uid: u32,
    pub mode: u32,
}

/// Kernel `dev_t` (as in `super_block.s_dev`: major << 20 | minor) of a
/// userspace `st_dev`.
pub fn kernel_dev(st_dev: u64) -> u32 {
    let major = libc::major(st_dev);
    let minor = libc::minor(st_dev);
    (major << 20) | minor
}

impl ExeFile {
    /// The file `m` describes, as the kernel would report it.
    pub fn of(m: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt as _;
        Self {
            ino: m.ino(),
            dev: kernel_dev(m.dev()),
            uid: m.uid(),
            mode: m.mode(),
        }
    }

    /// Owned by root and writable by nobody else: only root could have put
    /// this program there.
    pub fn root_owned(&self) -> bool {
        self.ino != 0 && self.uid == 0 && self.mode & 0o022 == 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkInfo {
    pub ktime_ns: u64,
    pub flags: u32,
    pub pid: u32,
    pub start_ns: u64,
    pub parent_tgid: u32,
    pub parent_start_ns: u64,
    pub creds: Creds,
    pub cgroup_id: u64,
    pub ns: NsIds,
    pub comm: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitInfo {
    pub ktime_ns: u64,
    pub pid: u32,
    pub start_ns: u64,
    /// Wait-status encoding: `code >> 8` is the exit status, `code & 0x7f` the signal.
    pub exit_code: u32,
}

/// One process acting on another (ptrace, memory, perf, bpf, pidfd).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessInfo {
    pub ktime_ns: u64,
    pub flags: u32,
    /// Actor thread and process.
    pub pid: u32,
    pub tgid: u32,
    pub start_ns: u64,
    pub access: AccessKind,
    /// Target pid as the actor named it (its own pid namespace); 0 when none.
    pub target_pid: u32,
    pub request: u64,
    pub arg: u64,
    /// Syscall result, when the event was sent at the syscall's exit.
    pub ret: Option<i64>,
    /// Calls this event stands for.
    pub count: u64,
    /// True for a periodic aggregate of repeats (the first call was its own event).
    pub aggregate: bool,
    /// The open (or, with `at_access`, the read or write) was an io_uring
    /// request.
    pub io_uring: bool,
    /// Seen as the memory was about to be read or written, not at the open.
    pub at_access: bool,
    /// The access changes the target (writes its memory or registers,
    /// takes a descriptor, sets EXITKILL): a read-only grant does not
    /// cover it.
    pub writes: bool,
    /// An aggregate of calls the kernel refused on its own (attempts, over
    /// whatever targets they named).
    pub refused: bool,
    /// Host pid of the target when the kernel resolved it.
    pub target_host_pid: Option<u32>,
    pub ppid: u32,
    pub creds: Creds,
    pub ns: NsIds,
    pub cgroup_id: u64,
    pub comm: Vec<u8>,
    /// bpf program name.
    pub name: Vec<u8>,
    /// What the kernel did about it.
    pub enforcement: Enforcement,
    /// Kernel rule slot behind the decision (`u32::MAX`: self-protection).
    pub rule: Option<u32>,
}

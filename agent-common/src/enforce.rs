//! The kernel's decision maps: compiled deny rules, the identities and
//! processes they protect, exemptions, grants, executables whose exec is
//! denied, the agent's own BPF objects, and the mechanism in force.
//!
//! Rules live in two banks of slots ([`KRULES_BANK`](crate::KRULES_BANK)
//! each): a policy load writes the bank not in use, then flips
//! [`enforce_slot::BANK`], then removes the old bank's entries, so no
//! moment passes with half a policy or none.

/// Slots of [`ENFORCE_MAP`](crate::ENFORCE_MAP).
pub mod enforce_slot {
    /// The [`enforce_mode`](super::enforce_mode) in force.
    pub const MODE: u32 = 0;
    /// The rule bank in use (0 or 1).
    pub const BANK: u32 = 1;
    /// `KINDS + bank`: which identities that bank protects, as
    /// `1 << id_kind` bits (identity work nobody asked for is skipped).
    pub const KINDS: u32 = 2;
}

/// Enforcement mechanism in force, slot [`enforce_slot::MODE`] of [`ENFORCE_MAP`](crate::ENFORCE_MAP).
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
    /// Not a rule's op but a modifier of [`ATTACH`]: the access changes
    /// the target (writes its memory or registers, takes one of its
    /// descriptors, ties its life to the tracer's). A read-only exemption
    /// or grant does not cover it ([`access_mode`]).
    pub const WRITE: u32 = 1 << 5;
}

/// How much an exemption or a grant lets its holder do: the value of an
/// [`EXEMPT_MAP`](crate::EXEMPT_MAP) entry.
pub mod access_mode {
    /// Look, not change: attach, read memory and registers, never write.
    pub const READ: u32 = 1;
    /// Everything the rule would deny.
    pub const FULL: u32 = 2;
}

/// Set in a [`GRANTS_MAP`](crate::GRANTS_MAP) value (an expiry in boot-time
/// ns, far below 2^63): the grant is read-only.
pub const GRANT_READ_ONLY: u64 = 1 << 63;

/// Whether ptrace `request` with `data` changes the tracee (x86-64
/// request numbers): its memory (POKE*), registers (SET*REGS*, POKEUSER,
/// thread area, fs/gs base), signal state (SETSIGINFO, SETSIGMASK),
/// whether its syscalls run (SYSEMU*, syscall user dispatch), its life
/// (KILL; EXITKILL set at SEIZE or SETOPTIONS, which kills it when the
/// tracer goes). Everything else reads or steers a stopped tracee the way
/// a backtrace does (CONT, DETACH, INTERRUPT, LISTEN).
pub const fn ptrace_writes(request: u64, data: u64) -> bool {
    const PTRACE_O_EXITKILL: u64 = 0x0010_0000;
    const ARCH_SET_GS: u64 = 0x1001;
    const ARCH_SET_FS: u64 = 0x1002;
    match request {
        4..=6 | 8 | 13 | 15 | 19 | 26 | 31 | 32 | 0x4203 | 0x4205 | 0x420b | 0x4210 => true,
        // PTRACE_ARCH_PRCTL: `data` is the arch_prctl code.
        30 => data == ARCH_SET_GS || data == ARCH_SET_FS,
        // PTRACE_SETOPTIONS, PTRACE_SEIZE: `data` holds the options.
        0x4200 | 0x4206 => data & PTRACE_O_EXITKILL != 0,
        _ => false,
    }
}

/// One compiled deny rule, indexed by its slot in [`KRULES_MAP`](crate::KRULES_MAP).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KRule {
    /// [`ops`] bits this rule denies.
    pub ops: u32,
    /// [`krule_flags`] bits.
    pub flags: u32,
}

layout!(
    KRule,
    8;
    ops: u32,
    flags: u32,
);

pub mod krule_flags {
    /// The slot holds a rule.
    pub const ENABLED: u32 = 1 << 0;
    /// An unexpired grant for the actor lets the action through.
    pub const HONOR_GRANTS: u32 = 1 << 1;
    /// The rule applies to every actor (perf/bpf rules have no target).
    pub const ACTOR_ONLY: u32 = 1 << 2;
}

/// A task as the actor of a syscall names it: the inode number of a pid
/// namespace and the pid in it. A protected process has one key per
/// thread and per namespace level it is visible in, so a thread id or a
/// pid seen from inside a container finds it too.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PidKey {
    pub ns: u32,
    pub nr: u32,
}
layout!(
    PidKey,
    8;
    ns: u32,
    nr: u32,
);

/// What the kernel knows of a protected process, under each of its
/// [`PidKey`]s.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Protected {
    /// Rule slot that protects it ([`SELF_PROTECTION`] for the agent).
    pub slot: u32,
    /// Host tgid: the process, whichever thread or namespace named it.
    pub tgid: u32,
    /// When the process started, in clock ticks since boot
    /// (`start_boottime / tick`, as `/proc/PID/stat` gives it): pid-scoped
    /// grants name the process, not a pid that may be reused.
    pub start_tick: u64,
    /// Hash of its systemd unit's name ([`unit_hash`]), 0 outside a unit.
    pub unit: u64,
}
layout!(
    Protected,
    24;
    slot: u32,
    tgid: u32,
    start_tick: u64,
    unit: u64,
);

/// Rule slot of the agent's protection of itself.
pub const SELF_PROTECTION: u32 = u32::MAX;

/// An identity a rule protects, in one bank: a process running an
/// executable (`kind` [`id_kind::EXE`], `value` its inode, `dev` its
/// device), in a systemd unit ([`id_kind::UNIT`], `value` the
/// [`unit_hash`] of its name, whichever cgroup id a restart gave it), or
/// as a user ([`id_kind::UID`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IdentityKey {
    pub bank: u32,
    pub kind: u32,
    pub value: u64,
    pub dev: u32,
    pub _pad: u32,
}
layout!(
    IdentityKey,
    24;
    bank: u32,
    kind: u32,
    value: u64,
    dev: u32,
    _pad: u32,
);

/// [`IdentityKey::kind`] values (and [`CommKey`], kind `COMM`).
pub mod id_kind {
    pub const EXE: u32 = 1;
    pub const UNIT: u32 = 2;
    pub const UID: u32 = 3;
    pub const COMM: u32 = 4;
}

/// A protected comm, in one bank.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CommKey {
    pub bank: u32,
    pub comm: [u8; 16],
}
layout!(
    CommKey,
    20;
    bank: u32,
    comm: [u8; 16],
);

/// FNV-1a (64 bit) of a unit's name, as both sides compute it: the kernel
/// over the cgroup's directory name, the agent over the unit a rule or
/// grant names. 0 is kept for "no unit".
pub const fn unit_hash(name: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < name.len() && name[i] != 0 {
        h ^= name[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    if h == 0 { 1 } else { h }
}

/// Exemption of one actor (login uid, else uid) from one rule slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ExemptKey {
    pub slot: u32,
    pub uid: u32,
}
layout!(
    ExemptKey,
    8;
    slot: u32,
    uid: u32,
);

/// Grant scope kinds in [`GrantKey::scope`].
pub mod grant_scope {
    pub const ANY: u32 = 0;
    /// `value` is the [`unit_hash`](crate::unit_hash) of a systemd unit's
    /// name: the grant follows the service across restarts.
    pub const UNIT: u32 = 1;
    /// `value` is a tgid and `start_tick` its process's start time (clock
    /// ticks since boot): the grant ends with that process, never passes to
    /// a reused pid.
    pub const PROCESS: u32 = 2;
}

/// A grant for one actor (login uid, else uid) over one scope; the map value
/// is the expiry in `CLOCK_BOOTTIME` ns, so it ends in the kernel, on time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GrantKey {
    pub uid: u32,
    pub scope: u32,
    pub value: u64,
    pub start_tick: u64,
}

layout!(
    GrantKey,
    24;
    uid: u32,
    scope: u32,
    value: u64,
    start_tick: u64,
);

/// A BPF object of the agent's (`kind` 1 program, 2 map, 3 link), by id:
/// `bpf(*_GET_FD_BY_ID)` on one is an attempt to blind or rewrite the agent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ObjectKey {
    pub kind: u32,
    pub id: u32,
}
layout!(
    ObjectKey,
    8;
    kind: u32,
    id: u32,
);

/// [`ObjectKey::kind`] values.
pub mod object_kind {
    pub const PROG: u32 = 1;
    pub const MAP: u32 = 2;
    pub const LINK: u32 = 3;
}

/// Identity of an executable file, inode and device, in one rule bank.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InodeKey {
    pub ino: u64,
    pub dev: u32,
    pub bank: u32,
}
layout!(
    InodeKey,
    16;
    ino: u64,
    dev: u32,
    bank: u32,
);

#[cfg(test)]
mod tests {
    use super::ptrace_writes;

    #[test]
    fn ptrace_requests_that_change_the_tracee() {
        const EXITKILL: u64 = 0x0010_0000;
        // POKETEXT/DATA/USER, KILL, SETREGS, SETFPREGS, SETFPXREGS,
        // SET_THREAD_AREA, SYSEMU*, SETSIGINFO, SETREGSET, SETSIGMASK,
        // SET_SYSCALL_USER_DISPATCH_CONFIG.
        for req in [
            4, 5, 6, 8, 13, 15, 19, 26, 31, 32, 0x4203, 0x4205, 0x420b, 0x4210,
        ] {
            assert!(ptrace_writes(req, 0), "{req:#x}");
        }
        // PEEK*, CONT, SINGLESTEP, GETREGS, ATTACH, DETACH, SYSCALL,
        // GETEVENTMSG, GETSIGINFO, GETREGSET, INTERRUPT, LISTEN,
        // GET_SYSCALL_INFO: what gdb's backtrace and strace use.
        for req in [
            1, 2, 3, 7, 9, 12, 14, 16, 17, 24, 0x4201, 0x4202, 0x4204, 0x4207, 0x4208, 0x420e,
        ] {
            assert!(!ptrace_writes(req, 0), "{req:#x}");
        }
        // SEIZE and SETOPTIONS only with EXITKILL (strace seizes without).
        assert!(!ptrace_writes(0x4206, 0x1 | 0x80));
        assert!(ptrace_writes(0x4206, EXITKILL));
        assert!(ptrace_writes(0x4200, EXITKILL | 0x1));
        assert!(!ptrace_writes(0x4200, 0x1));
        // ARCH_PRCTL sets fs/gs base with ARCH_SET_GS/FS, reads with GET.
        assert!(ptrace_writes(30, 0x1002) && !ptrace_writes(30, 0x1003));
    }
}

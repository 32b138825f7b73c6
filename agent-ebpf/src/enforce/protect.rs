//! The protected processes, as the kernel keeps them: every thread of a
//! protected process under a [`PidKey`] for each pid namespace level it is
//! visible at (at most [`MAX_LEVELS`]), so a syscall that names a thread
//! id, or a pid as seen from inside a container, finds the process too.
//! Written here at fork (a child inherits), exec (decided again from the
//! new identity) and exit; seeded by the agent for processes that were
//! running before it.

use agent_common::{PidKey, Protected};
use aya_ebpf::helpers::generated::bpf_get_current_task;

use super::{PROTECT, identity};
use crate::task::{offsets, read_or_zero};

/// Pid namespace levels recorded per task: the host's and up to three
/// nested ones (containers rarely nest deeper; a deeper level is named by
/// its outer three).
pub(crate) const MAX_LEVELS: u32 = 4;

/// `task`'s key at pid namespace `level` (of its `struct pid`).
#[inline(always)]
fn key_at(pid: *const u8, level: u32) -> PidKey {
    let off = offsets();
    let upid = pid.wrapping_add((off.pid_numbers + (level & 31) * off.upid_size) as usize);
    let ns = read_or_zero::<*const u8>(upid, off.upid_ns);
    PidKey {
        ns: read_or_zero::<u32>(ns, off.pidns_inum),
        nr: read_or_zero::<u32>(upid, off.upid_nr),
    }
}

#[inline(always)]
fn pid_of(task: *const u8) -> (*const u8, u32) {
    let off = offsets();
    let pid = read_or_zero::<*const u8>(task, off.task_thread_pid);
    let level = read_or_zero::<u32>(pid, off.pid_level) & 31;
    (pid, level)
}

/// `task` as the host names it (pid namespace level 0).
#[inline(always)]
pub(crate) fn host_key(task: *const u8) -> PidKey {
    key_at(pid_of(task).0, 0)
}

/// The protected process `task` belongs to, if any.
#[inline(always)]
pub(crate) fn of_task(task: *const u8) -> Option<Protected> {
    // SAFETY: map lookup with a key on the stack.
    unsafe { PROTECT.get(host_key(task)) }.copied()
}

/// The protected process `task` belongs to: from the map, or, for a task
/// the map does not hold yet, from what it is.
#[inline(always)]
pub(crate) fn of_task_or_identity(task: *const u8) -> Option<Protected> {
    of_task(task).or_else(|| identity::protection_of(task))
}

/// The protected process the current task names `nr` (a pid or thread id in
/// its own pid namespace), if any.
#[inline(always)]
pub(crate) fn named(nr: u32) -> Option<Protected> {
    // SAFETY: helper without preconditions.
    let me = unsafe { bpf_get_current_task() } as *const u8;
    let (pid, level) = pid_of(me);
    let key = PidKey {
        ns: key_at(pid, level).ns,
        nr,
    };
    // SAFETY: map lookup with a key on the stack.
    unsafe { PROTECT.get(key) }.copied()
}

/// The protected process with host pid `nr`, if any (a pidfd names it so).
#[inline(always)]
pub(crate) fn host_named(nr: u32) -> Option<Protected> {
    // SAFETY: helper without preconditions.
    let me = unsafe { bpf_get_current_task() } as *const u8;
    let key = PidKey {
        ns: host_key(me).ns,
        nr,
    };
    // SAFETY: map lookup with a key on the stack.
    unsafe { PROTECT.get(key) }.copied()
}

/// Records `task` as (a thread of) the protected process `p`, under each of
/// its keys.
#[inline(always)]
pub(crate) fn protect(task: *const u8, p: &Protected) {
    let (pid, level) = pid_of(task);
    let mut i = 0;
    while i < MAX_LEVELS {
        if i > level {
            break;
        }
        let _ = PROTECT.insert(key_at(pid, i), p, 0);
        i += 1;
    }
}

/// Forgets `task` under each of its keys.
#[inline(always)]
pub(crate) fn forget(task: *const u8) {
    let (pid, level) = pid_of(task);
    let mut i = 0;
    while i < MAX_LEVELS {
        if i > level {
            break;
        }
        let _ = PROTECT.remove(key_at(pid, i));
        i += 1;
    }
}

//! Enforcement by the syscall hooks: where BPF-LSM is missing (and, for
//! what no LSM hook sees, everywhere), the actor of a denied access is
//! killed as the syscall returns, and only when the syscall succeeded. A
//! call the kernel itself refused (an unprivileged user, a missing target)
//! is recorded as the attempt it was, counted per actor and target, and
//! nobody is killed for it. Decided from the same maps as the LSM hooks.
//!
//! Killing on the way out is as safe as killing on the way in: a pending
//! SIGKILL is taken before the task runs another user instruction, and
//! the syscall ran either way (a tracepoint cannot cancel it). Where the
//! syscall moves another process's memory, the kill is sent earlier, when
//! it locks the target's address space (`address_space`): the copy then
//! fails, so a write never lands and a read never reaches memory an
//! accomplice shares.

use agent_common::{AccessEvent, Enforcement, Protected, access_flags, enforce_mode, ops};
use aya_ebpf::helpers::generated::{bpf_get_current_task, bpf_send_signal};

use super::event::{aggregate_attempt, emit, parked, unpark};
use crate::{
    enforce::{self, NO_SLOT, identity},
    task::person_uid,
};

const SIGKILL: u32 = 9;

/// The person behind the current task: its login uid if set, else its uid
/// (grants and exemptions follow the person, through sudo).
#[inline(always)]
pub(crate) fn actor_uid() -> u32 {
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    person_uid(task)
}

/// Whether the syscall hooks enforce: always under the kill fallback, and
/// under BPF-LSM for what no LSM hook sees (`lsm_blind`).
#[inline(always)]
pub(super) fn hooks_enforce(lsm_blind: bool) -> bool {
    match enforce::mode() {
        enforce_mode::KILL => true,
        enforce_mode::LSM => lsm_blind,
        _ => false,
    }
}

/// The rule that denies `op` on `p` to the current actor, or [`NO_SLOT`].
#[inline(always)]
pub(super) fn denied(p: &Option<Protected>, op: u32) -> u32 {
    match p {
        Some(p) => enforce::decide(p, op, actor_uid()),
        None => NO_SLOT,
    }
}

/// The op an access event stands for: [`ops::ATTACH`], with
/// [`ops::WRITE`] when it changes the target.
#[inline(always)]
pub(super) fn op_of(ev: &AccessEvent) -> u32 {
    if ev.flags2 & access_flags::WRITES != 0 {
        ops::ATTACH | ops::WRITE
    } else {
        ops::ATTACH
    }
}

/// The rule that denies `op` to the current actor whatever the target
/// (perf, bpf), or [`NO_SLOT`].
#[inline(always)]
pub(super) fn denied_actor(op: u32) -> u32 {
    enforce::decide_actor(op, actor_uid())
}

/// Marks a parked event: kill the actor at the syscall's return if it
/// succeeded, under rule `slot`.
#[inline(always)]
pub(super) fn kill_if_done(ev: &mut AccessEvent, slot: u32) {
    ev.rule = slot;
    ev.flags2 |= access_flags::KILL_AT_EXIT;
}

/// The syscall this thread is in (ptrace, process_vm_*) got past the
/// kernel's permission checks and is locking the target's memory: if its
/// entry marked it with [`kill_if_done`], or the target turns out to be
/// protected after all (by `known`, the protection map's answer, or what
/// `owner` is, asked only then: a process forked a moment ago, not in the
/// map at the entry), kill now, before the copy.
/// The parked event goes out at the syscall's return as the kill it was,
/// with whatever result the interrupted call had.
#[inline(always)]
pub(super) fn kill_before_copy(known: Option<Protected>, owner: *const u8) {
    let Some(ev) = parked(None) else {
        return;
    };
    if ev.enforcement != Enforcement::None as u32 {
        return;
    }
    if ev.flags2 & access_flags::KILL_AT_EXIT == 0 {
        let Some(p) = identity::known_or_protection_of(known, owner) else {
            return;
        };
        let slot = denied(&Some(p), op_of(ev));
        if slot == NO_SLOT || !hooks_enforce(false) {
            return;
        }
        ev.rule = slot;
        ev.target_host_pid = p.tgid;
        ev.flags2 |= access_flags::TARGET_RESOLVED;
    }
    ev.flags2 &= !access_flags::KILL_AT_EXIT;
    ev.flags2 |= access_flags::AT_ACCESS;
    mark_killed(ev, ev.rule);
}

/// Kills the current process; `ev` says so, for the caller to send.
#[inline(always)]
pub(crate) fn mark_killed(ev: &mut AccessEvent, slot: u32) {
    // SAFETY: helper without preconditions; signals the current process.
    unsafe { bpf_send_signal(SIGKILL) };
    ev.rule = slot;
    ev.enforcement = Enforcement::Killed as u32;
}

/// Sends this thread's parked event with the syscall's return value, after
/// `amend` has had its say, killing the actor first when the event was
/// marked with [`kill_if_done`] and the call went through (or its result
/// cannot be read: then enforcement wins). A call the kernel refused on
/// its own is an attempt, counted per actor (see `aggregate_attempt`).
/// False when nothing was parked.
#[inline(always)]
pub(super) fn settle(ret: Option<i64>, amend: impl FnOnce(&mut AccessEvent)) -> bool {
    let Some(ev) = parked(ret) else {
        return false;
    };
    amend(ev);
    if ev.flags2 & access_flags::DROP != 0 {
        unpark();
        return true;
    }
    if ev.flags2 & access_flags::KILL_AT_EXIT != 0 {
        ev.flags2 &= !access_flags::KILL_AT_EXIT;
        if ret.is_none_or(|r| r >= 0) {
            mark_killed(ev, ev.rule);
            emit(ev);
        } else {
            // Refused by the kernel on its own: an attempt, counted.
            ev.rule = 0;
            aggregate_attempt(ev);
        }
    } else if ret.is_some_and(|r| r < 0) && ev.enforcement == Enforcement::None as u32 {
        aggregate_attempt(ev);
    } else {
        emit(ev);
    }
    unpark();
    true
}

#[inline(always)]
pub(super) fn send_parked(ret: Option<i64>) {
    settle(ret, |_| ());
}

//! Enforcement where BPF-LSM is missing: the actor of a denied access is
//! killed at the syscall's entry (an open found at its exit: as it
//! returns), decided from the same maps as the LSM hooks.

use agent_common::{AccessEvent, Enforcement, enforce_mode};
use aya_ebpf::helpers::generated::bpf_send_signal;

use super::event::emit;
use crate::enforce;

const SIGKILL: u32 = 9;

/// Fallback for rules on the actor alone (perf, bpf).
#[inline(always)]
pub(super) fn kill_fallback_actor(ev: &mut AccessEvent, op: u32) -> bool {
    if enforce::mode() != enforce_mode::KILL {
        return false;
    }
    match enforce::decide_actor(op) {
        enforce::NO_SLOT => false,
        slot => kill_actor(ev, slot),
    }
}

/// Kills the current process and reports it with the deciding rule.
#[inline(always)]
pub(super) fn kill_actor(ev: &mut AccessEvent, slot: u32) -> bool {
    mark_killed(ev, slot);
    emit(ev);
    true
}

/// Kills the current process; `ev` says so, for the caller to send.
#[inline(always)]
pub(super) fn mark_killed(ev: &mut AccessEvent, slot: u32) {
    // SAFETY: helper without preconditions; signals the current process.
    unsafe { bpf_send_signal(SIGKILL) };
    ev.rule = slot;
    ev.enforcement = Enforcement::Killed as u32;
}

/// Fallback enforcement where BPF-LSM is unavailable: the actor is killed at
/// the syscall's entry (an open found at its exit: as it returns), so no
/// result of the syscall ever reaches it. The
/// syscall itself still runs (a tracepoint cannot cancel it): an attach may
/// stop the target before the tracer dies and is detached, which is why the
/// agent resumes targets its kills left stopped.
#[inline(always)]
pub(super) fn kill_fallback(ev: &mut AccessEvent, target_tgid: u32, op: u32) -> bool {
    kill_unsent(ev, target_tgid, op) && {
        emit(ev);
        true
    }
}

/// [`kill_fallback`] without sending the event.
#[inline(always)]
pub(super) fn kill_unsent(ev: &mut AccessEvent, target_tgid: u32, op: u32) -> bool {
    if enforce::mode() != enforce_mode::KILL {
        return false;
    }
    match enforce::decide_target(core::ptr::null(), target_tgid, op) {
        enforce::NO_SLOT => false,
        slot => {
            mark_killed(ev, slot);
            true
        }
    }
}

//! Access events: built for the current task in per-CPU scratch space,
//! sent at once, parked until their syscall returns, or counted as
//! repeats of one already sent.

use agent_common::{
    AccessEvent, AccessKind, AggKey, Enforcement, EventKind, access_flags, agg_outcome, fault,
};
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::generated::{bpf_get_current_cgroup_id, bpf_get_current_task, bpf_ktime_get_boot_ns},
};

use crate::{
    ring::{ACCESS_SCRATCH, AGG, EVENTS, PENDING, count_fault, count_lost, wake_if_idle},
    task::{current_comm, current_pid_tgid, offsets, read_creds, read_ns, read_or_zero},
};

/// An access event for the current task with the actor filled in, built
/// in per-CPU scratch space: the BPF stack (512 bytes) cannot hold it next
/// to the hooks' own locals.
#[inline(always)]
pub(crate) fn new_event(
    pid: u32,
    tgid: u32,
    access: AccessKind,
    target_pid: u32,
) -> Option<&'static mut AccessEvent> {
    let p = ACCESS_SCRATCH.get_ptr_mut(0)?;
    let off = offsets();
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    // SAFETY: a per-CPU map value, exclusive to this CPU while the program runs.
    let ev = unsafe { &mut *p };
    ev.header.kind = EventKind::Access as u32;
    ev.header.flags = 0;
    // SAFETY: helper without preconditions.
    ev.header.ktime_ns = unsafe { bpf_ktime_get_boot_ns() };
    ev.header.pid = pid;
    ev.header.tgid = tgid;
    ev.header.start_ns = read_or_zero::<u64>(task, off.task_start_boottime);
    ev.access = access as u32;
    ev.target_pid = target_pid;
    ev.request = 0;
    ev.arg = 0;
    ev.ret = 0;
    ev.count = 1;
    ev.target_host_pid = 0;
    ev.flags2 = 0;
    let parent = read_or_zero::<*const u8>(task, off.task_real_parent);
    ev.ppid = read_or_zero::<u32>(parent, off.task_tgid);
    ev.creds = read_creds(task, off, &mut ev.header.flags);
    ev.ns = read_ns(task, off);
    // SAFETY: helper without preconditions.
    ev.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    ev.comm = current_comm();
    ev.name = [0; 16];
    ev.rule = 0;
    ev.enforcement = Enforcement::None as u32;
    Some(ev)
}

/// An event for a kernel denial by the current task.
#[inline(always)]
pub(crate) fn deny_event(
    kind: AccessKind,
    target: u32,
    slot: u32,
    d: Enforcement,
) -> Option<&'static mut AccessEvent> {
    let (pid, tgid) = current_pid_tgid();
    let ev = new_event(pid, tgid, kind, target)?;
    ev.rule = slot;
    ev.enforcement = d as u32;
    Some(ev)
}

/// Reports a denial: the first per (actor, target, kind) at once, repeats
/// (a tool retrying in a loop) counted.
#[inline(always)]
pub(crate) fn report_denial(ev: Option<&'static mut AccessEvent>) {
    match ev {
        Some(ev) => aggregate(ev),
        None => count_lost(EventKind::Access),
    }
}

#[inline(always)]
pub(crate) fn emit(ev: &AccessEvent) {
    if EVENTS.output::<AccessEvent>(ev, wake_if_idle()).is_err() {
        count_lost(EventKind::Access);
    }
}

/// Counts a repeat of an already reported access; reports the first at once.
#[inline(always)]
pub(crate) fn aggregate(ev: &AccessEvent) {
    count_or_emit(
        ev,
        AggKey {
            actor_tgid: ev.header.tgid,
            target_pid: ev.target_pid,
            access: ev.access,
            outcome: agg_outcome::DONE,
            request: ev.request,
        },
    );
}

/// Like [`aggregate`], for a call the kernel refused on its own: counted
/// per actor, kind and request whatever it named, so a tool guessing pids
/// in a loop is one record and a count.
#[inline(always)]
pub(crate) fn aggregate_attempt(ev: &AccessEvent) {
    count_or_emit(
        ev,
        AggKey {
            actor_tgid: ev.header.tgid,
            target_pid: 0,
            access: ev.access,
            outcome: agg_outcome::REFUSED,
            request: ev.request,
        },
    );
}

#[inline(always)]
fn count_or_emit(ev: &AccessEvent, key: AggKey) {
    if let Some(v) = AGG.get_ptr_mut(key) {
        // SAFETY: this CPU's slot of a per-CPU map value, valid while the
        // program runs; per-CPU slots need no atomics.
        unsafe { *v += 1 };
        return;
    }
    let inserted = AGG.insert(key, 0, u64::from(BPF_NOEXIST));
    if inserted.is_ok() {
        emit(ev);
    } else if let Some(v) = AGG.get_ptr_mut(key) {
        // Another CPU inserted it first: this call is a repeat.
        // SAFETY: as above.
        unsafe { *v += 1 };
    } else {
        count_fault(fault::AGG_INSERT, i64::from(inserted.err().unwrap_or(-1)));
    }
}

/// Parks an event until the syscall returns, so the record carries the result.
#[inline(always)]
pub(super) fn park(pid: u32, ev: &AccessEvent) {
    if let Err(e) = PENDING.insert(pid, ev, 0) {
        count_fault(fault::PENDING_INSERT, i64::from(e));
        emit(ev); // better without a result than not at all
    }
}

/// Like [`aggregate`], but a first occurrence is parked until its syscall
/// returns instead of sent at once, so its record carries the result (and
/// a BPF-LSM refusal on the way).
#[inline(always)]
pub(super) fn aggregate_or_park(pid: u32, ev: &AccessEvent) {
    let key = AggKey {
        actor_tgid: ev.header.tgid,
        target_pid: ev.target_pid,
        access: ev.access,
        outcome: agg_outcome::DONE,
        request: ev.request,
    };
    if let Some(v) = AGG.get_ptr_mut(key) {
        // SAFETY: as in `aggregate`.
        unsafe { *v += 1 };
        return;
    }
    let inserted = AGG.insert(key, 0, u64::from(BPF_NOEXIST));
    if inserted.is_ok() {
        park(pid, ev);
    } else if let Some(v) = AGG.get_ptr_mut(key) {
        // SAFETY: as in `aggregate`.
        unsafe { *v += 1 };
    } else {
        count_fault(fault::AGG_INSERT, i64::from(inserted.err().unwrap_or(-1)));
    }
}

/// This thread's parked event, with the syscall's return value filled in
/// when it is known. It stays parked until [`unpark`].
#[inline(always)]
pub(super) fn parked(ret: Option<i64>) -> Option<&'static mut AccessEvent> {
    let (pid, _) = current_pid_tgid();
    let ev = PENDING.get_ptr_mut(pid)?;
    // SAFETY: a map value pointer, valid while the program runs; only this
    // thread parks under its own id.
    let ev = unsafe { &mut *ev };
    if let Some(ret) = ret {
        ev.ret = ret;
        ev.flags2 |= access_flags::HAS_RET;
    }
    Some(ev)
}

/// Drops this thread's parked event (after it was sent).
#[inline(always)]
pub(super) fn unpark() {
    let (pid, _) = current_pid_tgid();
    let _ = PENDING.remove(pid);
}

/// A BPF-LSM hook refused the syscall this thread is in: says so on its
/// parked event, which then goes out once, with the result. False when
/// nothing is parked (the hook then sends an event of its own).
#[inline(always)]
pub(crate) fn note_refusal(slot: u32) -> bool {
    match parked(None) {
        Some(ev) => {
            ev.enforcement = Enforcement::DeniedLsm as u32;
            ev.rule = slot;
            true
        }
        None => false,
    }
}

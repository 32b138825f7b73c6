//! ptrace: every request. Attaches are sent with their result at the
//! syscall's exit; other requests once per tracer, target and request, then
//! counted. The target is resolved to its process whichever thread id or
//! namespace pid named it.
//!
//! BPF-LSM refuses attaches (`ptrace_access_check`), but no LSM hook sees
//! the requests on a task already traced: a tracer that attached before
//! its tracee became protected (by exec, fork or a policy load) is killed
//! at its next request whatever the mechanism, and so is a tracer holding
//! only a read-only grant at its first request that changes the tracee
//! ([`ptrace_writes`]). A write to memory is stopped before it lands (the
//! kill is sent as the target's memory is locked); a register write lands
//! as the tracer dies, since nothing here can fail the syscall.

use agent_common::{
    AccessKind, Enforcement, EventKind, Protected, access_flags, ops, ptrace_writes,
};
use aya_ebpf::{
    helpers::generated::bpf_get_current_task,
    macros::{fentry, fexit, tracepoint},
    programs::{FEntryContext, FExitContext, TracePointContext},
};

use super::{
    Args,
    event::{aggregate, new_event, park},
    exit_ret,
    fallback::{denied, hooks_enforce, kill_if_done, op_of, settle},
};
use crate::{
    enforce::{NO_SLOT, protect},
    ring::count_lost,
    task::{current_pid_tgid, is_agent, offsets, read_field},
};

const PTRACE_TRACEME: u64 = 0;

const PTRACE_ATTACH: u64 = 16;

const PTRACE_SEIZE: u64 = 0x4206;

#[inline(always)]
fn ptrace_sys_enter_ptrace_body(a: Args) -> u32 {
    let (pid, tgid) = current_pid_tgid();
    if is_agent(tgid) {
        return 0;
    }
    let (Ok(req), Ok(target)) = (a.arg(0), a.arg(1)) else {
        count_lost(EventKind::Access);
        return 0;
    };
    let traceme = req == PTRACE_TRACEME;
    let attach = matches!(req, PTRACE_TRACEME | PTRACE_ATTACH | PTRACE_SEIZE);
    let target = if traceme { 0 } else { target as u32 };
    let Some(ev) = new_event(pid, tgid, AccessKind::Ptrace, target) else {
        count_lost(EventKind::Access);
        return 0;
    };
    ev.request = req;
    ev.arg = a.arg(2).unwrap_or(0);
    let data = a.arg(3).unwrap_or(0);
    if ptrace_writes(req, data) {
        ev.flags2 |= access_flags::WRITES;
    }
    let p: Option<Protected> = if traceme {
        // SAFETY: helper without preconditions.
        protect::of_task(unsafe { bpf_get_current_task() } as *const u8)
    } else {
        protect::named(target)
    };
    if !traceme && let Some(p) = &p {
        ev.target_host_pid = p.tgid;
        ev.flags2 |= access_flags::TARGET_RESOLVED;
    }
    let op = if traceme { ops::TRACEME } else { op_of(ev) };
    let slot = denied(&p, op);
    // BPF-LSM decides attach, seize and traceme itself; nothing else.
    if slot != NO_SLOT && hooks_enforce(!attach) {
        kill_if_done(ev, slot);
        park(pid, ev);
    } else if attach {
        park(pid, ev);
    } else {
        aggregate(ev);
    }
    0
}

syscall_entry!(
    ptrace_sys_enter_ptrace_body,
    ptrace_sys_enter_ptrace = "sys_enter_ptrace",
    fentry_ptrace
);

/// The exit: the parked event goes out with the result. An attach that
/// went through to a process not known protected at the entry is judged
/// again by the task it took: a child forked a moment ago can be named
/// before the fork tracepoint has protected it, and is protected by what
/// it is (its parent's program, unit and user).
#[inline(always)]
fn ptrace_exit(ret: Option<i64>) {
    settle(ret, |ev| {
        let attach = ev.request == PTRACE_ATTACH || ev.request == PTRACE_SEIZE;
        if !attach
            || ret != Some(0)
            || ev.flags2 & access_flags::KILL_AT_EXIT != 0
            || ev.enforcement != Enforcement::None as u32
        {
            return;
        }
        let Some(tracee) = newest_tracee() else {
            return;
        };
        let Some(p) = protect::of_task_or_identity(tracee) else {
            return;
        };
        ev.target_host_pid = p.tgid;
        ev.flags2 |= access_flags::TARGET_RESOLVED;
        let slot = denied(&Some(p), op_of(ev));
        if slot != NO_SLOT && hooks_enforce(false) {
            kill_if_done(ev, slot);
        }
    });
}

/// The task the current tracer attached to last (its `ptraced` list is
/// newest first).
#[inline(always)]
fn newest_tracee() -> Option<*const u8> {
    let off = offsets();
    // SAFETY: helper without preconditions.
    let me = unsafe { bpf_get_current_task() } as *const u8;
    let head = me.wrapping_add(off.task_ptraced as usize);
    let first = read_field::<*const u8>(head, 0).ok()?;
    if first.is_null() || first == head {
        return None;
    }
    Some(first.wrapping_sub(off.task_ptrace_entry as usize))
}

syscall_exit!(
    ptrace_exit,
    ptrace_sys_exit_ptrace = "sys_exit_ptrace",
    fexit_ptrace
);

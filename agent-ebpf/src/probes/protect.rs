//! Keeping the protected processes current, in the kernel, as they change:
//! at fork a child (or a new thread) inherits its parent's protection, at
//! exec a process is judged again by what it now runs, at exit a thread is
//! forgotten. Nothing waits for the agent: a protected service's child is
//! protected from its first instruction, and a restarted unit's processes
//! from their exec.
//!
//! An exec also ends what a tracer could get by attaching early: a traced
//! task that now runs a protected program, traced by someone the rule does
//! not exempt, is killed before its first instruction (under BPF-LSM the
//! exec was already refused in `bprm_check_security`; this is the
//! backstop). Separate programs from the recording ones on the same
//! tracepoints, so each stays within the verifier's budget.

use agent_common::{
    AccessKind, Enforcement, EventKind, Protected, access_flags, enforce_mode, ops,
};
use aya_ebpf::{
    helpers::generated::bpf_get_current_task,
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};

use crate::{
    enforce::{
        self, NO_SLOT,
        identity::{self, Identity},
        protect,
    },
    probes::access::{
        event::{emit, new_event},
        fallback::mark_killed,
    },
    ring::count_lost,
    task::{
        current_comm, current_pid_tgid, is_agent, offsets, person_uid, read_or_zero, real_uid,
        start_tick,
    },
};

/// `task_struct.ptrace & PT_PTRACED`: the task has a tracer.
const PT_PTRACED: u32 = 1;

#[btf_tracepoint(function = "sched_process_fork")]
pub(crate) fn protect_sched_process_fork(ctx: BtfTracePointContext) -> u32 {
    let parent: *const u8 = ctx.arg(0);
    let child: *const u8 = ctx.arg(1);
    // The agent's own threads inherit its self-protection too.
    let Some(p) = protect::of_task(parent) else {
        return 0;
    };
    let off = offsets();
    let pid = read_or_zero::<u32>(child, off.task_pid);
    let tgid = read_or_zero::<u32>(child, off.task_tgid);
    let inherited = if pid == tgid {
        // A new process: the same rule, its own identity.
        Protected {
            tgid,
            start_tick: start_tick(child),
            ..p
        }
    } else {
        p
    };
    protect::protect(child, &inherited);
    0
}

#[tracepoint(category = "sched", name = "sched_process_exit")]
pub(crate) fn protect_sched_process_exit(_ctx: TracePointContext) -> u32 {
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    if protect::of_task(task).is_some() {
        protect::forget(task);
    }
    0
}

#[tracepoint(category = "sched", name = "sched_process_exec")]
pub(crate) fn protect_sched_process_exec(_ctx: TracePointContext) -> u32 {
    let (_, tgid) = current_pid_tgid();
    if is_agent(tgid) {
        return 0;
    }
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let had = protect::of_task(task).is_some();
    if !identity::any() && !had {
        return 0;
    }
    let off = offsets();
    let (ino, dev) = identity::exe_of(task);
    let unit = identity::unit_of(task);
    let id = Identity {
        ino,
        dev,
        comm: current_comm(),
        unit,
        uid: real_uid(task),
    };
    let slot = identity::slot_of(&id);
    if slot == NO_SLOT {
        if had {
            protect::forget(task);
        }
        return 0;
    }
    let p = Protected {
        slot,
        tgid,
        start_tick: start_tick(task),
        unit,
    };
    protect::protect(task, &p);
    if read_or_zero::<u32>(task, off.task_ptrace) & PT_PTRACED != 0 {
        traced(task, &p);
    }
    0
}

/// A tracer kept its tracee through an exec into a protected program.
#[inline(always)]
fn traced(task: *const u8, p: &Protected) {
    if enforce::mode() == enforce_mode::OFF {
        return;
    }
    let off = offsets();
    let tracer = read_or_zero::<*const u8>(task, off.task_parent);
    let slot = enforce::decide(p, ops::ATTACH, person_uid(tracer));
    if slot == NO_SLOT {
        return;
    }
    let (pid, tgid) = current_pid_tgid();
    let Some(ev) = new_event(pid, tgid, AccessKind::ExecTraced, tgid) else {
        count_lost(EventKind::Access);
        return;
    };
    ev.arg = u64::from(read_or_zero::<u32>(tracer, off.task_tgid));
    ev.target_host_pid = tgid;
    ev.flags2 |= access_flags::TARGET_RESOLVED;
    mark_killed(ev, slot);
    debug_assert!(ev.enforcement == Enforcement::Killed as u32);
    emit(ev);
}

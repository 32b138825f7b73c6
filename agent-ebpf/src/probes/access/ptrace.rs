//! ptrace: every request, attaches sent with their result at the exit,
//! the others once per tracer, target and request and then counted.

use agent_common::{AccessKind, EventKind, ops};
use aya_ebpf::{
    macros::{fentry, fexit, tracepoint},
    programs::{FEntryContext, FExitContext, TracePointContext},
};

use super::{
    Args,
    event::{aggregate, new_event, park, send_parked},
    exit_ret,
    fallback::kill_fallback,
};
use crate::{
    ring::count_lost,
    task::{current_pid_tgid, is_agent},
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
    // Attaches are sent with their result; every other request (memory,
    // registers, control) is sent once per tracer, target and request, then
    // counted: `strace -f` issues one or more per syscall of the tracee.
    let attach = matches!(req, PTRACE_TRACEME | PTRACE_ATTACH | PTRACE_SEIZE);
    let target = if req == PTRACE_TRACEME {
        0
    } else {
        target as u32
    };
    let Some(ev) = new_event(pid, tgid, AccessKind::Ptrace, target) else {
        count_lost(EventKind::Access);
        return 0;
    };
    ev.request = req;
    ev.arg = a.arg(2).unwrap_or(0);
    let (subject, op) = if req == PTRACE_TRACEME {
        (tgid, ops::TRACEME)
    } else {
        (target, ops::ATTACH)
    };
    if kill_fallback(ev, subject, op) {
        return 0;
    }
    if attach {
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

syscall_exit!(
    send_parked,
    ptrace_sys_exit_ptrace = "sys_exit_ptrace",
    fexit_ptrace
);

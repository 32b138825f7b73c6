//! `tp_btf/sched_process_fork`: a BTF-typed tracepoint, because only it hands
//! over the child's `task_struct`, which tells a new process (pid == tgid)
//! from a new thread (not reported) and gives the child's start time.

use agent_common::{EventHeader, EventKind, ForkEvent};
use aya_ebpf::{
    helpers::generated::{bpf_get_current_cgroup_id, bpf_ktime_get_boot_ns},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};

use crate::{
    ring::{EVENTS, count_lost, lazy_wakeup},
    task::{
        current_comm, current_pid_tgid, is_agent, offsets, read_creds, read_field, read_ns,
        read_or_zero,
    },
};

#[btf_tracepoint(function = "sched_process_fork")]
pub(crate) fn fork_sched_process_fork(ctx: BtfTracePointContext) -> u32 {
    let (_, tgid) = current_pid_tgid();
    if is_agent(tgid) {
        return 0;
    }
    if try_fork(&ctx).is_err() {
        count_lost(EventKind::Fork);
    }
    0
}

fn try_fork(ctx: &BtfTracePointContext) -> Result<(), i64> {
    let off = offsets();
    let parent: *const u8 = ctx.arg(0);
    let child: *const u8 = ctx.arg(1);
    let child_pid = read_field::<u32>(child, off.task_pid)?;
    let child_tgid = read_field::<u32>(child, off.task_tgid)?;
    if child_pid != child_tgid {
        return Ok(()); // a thread, not a process
    }
    let mut ev_flags = 0u32;
    let creds = read_creds(child, off, &mut ev_flags);
    let parent_tgid = read_or_zero::<u32>(parent, off.task_tgid);
    let ev = ForkEvent {
        header: EventHeader {
            kind: EventKind::Fork as u32,
            flags: ev_flags,
            // SAFETY: helper without preconditions.
            ktime_ns: unsafe { bpf_ktime_get_boot_ns() },
            pid: child_pid,
            tgid: child_tgid,
            start_ns: read_or_zero::<u64>(child, off.task_start_boottime),
        },
        parent_tgid,
        _pad: 0,
        parent_start_ns: read_or_zero::<u64>(parent, off.task_start_boottime),
        creds,
        // The child is attached to its parent's cgroups before this tracepoint.
        // SAFETY: helper without preconditions.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        ns: read_ns(child, off),
        comm: current_comm(),
    };
    EVENTS
        .output::<ForkEvent>(&ev, lazy_wakeup())
        .map_err(i64::from)
}

//! `sched/sched_process_exit`: reported only when the last thread of a
//! process exits (`signal->live` reached zero before this tracepoint), so the
//! agent's process table drops whole processes, not threads.

use agent_common::{EventHeader, EventKind, ExitEvent, OFFSET_ABSENT};
use aya_ebpf::{
    helpers::generated::{bpf_get_current_task, bpf_ktime_get_boot_ns},
    macros::tracepoint,
    programs::TracePointContext,
};

use crate::{
    ring::{EVENTS, count_lost, lazy_wakeup},
    task::{current_pid_tgid, is_agent, offsets, read_field, read_or_zero},
};

#[tracepoint(category = "sched", name = "sched_process_exit")]
pub(crate) fn exit_sched_process_exit(_ctx: TracePointContext) -> u32 {
    let (pid, tgid) = current_pid_tgid();
    if is_agent(tgid) {
        return 0;
    }
    if try_exit(pid, tgid).is_err() {
        count_lost(EventKind::Exit);
    }
    0
}

fn try_exit(pid: u32, tgid: u32) -> Result<(), i64> {
    let off = offsets();
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let group_dead = if off.task_signal == OFFSET_ABSENT || off.signal_live == OFFSET_ABSENT {
        pid == tgid
    } else {
        let signal = read_field::<*const u8>(task, off.task_signal)?;
        read_field::<i32>(signal, off.signal_live)? == 0
    };
    if !group_dead {
        return Ok(());
    }
    let ev = ExitEvent {
        header: EventHeader {
            kind: EventKind::Exit as u32,
            flags: 0,
            // SAFETY: helper without preconditions.
            ktime_ns: unsafe { bpf_ktime_get_boot_ns() },
            pid,
            tgid,
            start_ns: read_or_zero::<u64>(task, off.task_start_boottime),
        },
        exit_code: read_or_zero::<u32>(task, off.task_exit_code),
        _pad: 0,
    };
    EVENTS
        .output::<ExitEvent>(&ev, lazy_wakeup())
        .map_err(i64::from)
}

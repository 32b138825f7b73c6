//! perf_event_open on another process and bpf program loads: the rules on
//! them are on the actor alone.

use agent_common::{AccessKind, EventKind, ops};
use aya_ebpf::{
    helpers::bpf_probe_read_user,
    macros::{fentry, fexit, tracepoint},
    programs::{FEntryContext, FExitContext, TracePointContext},
};

use super::{
    Args,
    event::{aggregate, new_event, park, send_parked},
    exit_ret,
    fallback::kill_fallback_actor,
};
use crate::{
    ring::count_lost,
    task::{current_pid_tgid, is_agent},
};

const BPF_PROG_LOAD: u64 = 5;

syscall_exit!(send_parked, bpf_sys_exit_bpf = "sys_exit_bpf", fexit_bpf);

#[inline(always)]
fn perf_sys_enter_perf_event_open_body(a: Args) -> u32 {
    let (pid, tgid) = current_pid_tgid();
    if is_agent(tgid) {
        return 0;
    }
    let (Ok(attr), Ok(target), Ok(cpu)) = (a.arg(0), a.arg(1), a.arg(2)) else {
        count_lost(EventKind::Access);
        return 0;
    };
    let target = target as i32;
    // pid 0 is the caller itself; pid -1 with a cpu is system-wide.
    if target == 0 {
        return 0;
    }
    let Some(ev) = new_event(
        pid,
        tgid,
        AccessKind::PerfOpen,
        if target > 0 { target as u32 } else { 0 },
    ) else {
        count_lost(EventKind::Access);
        return 0;
    };
    // SAFETY: the helper checks the user address; perf_event_attr.type is the first u32.
    ev.request =
        u64::from(unsafe { bpf_probe_read_user::<u32>(attr as *const u32) }.unwrap_or(u32::MAX));
    ev.arg = u64::from(cpu as u32);
    if !kill_fallback_actor(ev, ops::PERF) {
        aggregate(ev);
    }
    0
}

syscall_entry!(
    perf_sys_enter_perf_event_open_body,
    perf_sys_enter_perf_event_open = "sys_enter_perf_event_open",
    fentry_perf_event_open
);

#[inline(always)]
fn bpf_sys_enter_bpf_body(a: Args) -> u32 {
    let (pid, tgid) = current_pid_tgid();
    if is_agent(tgid) {
        return 0;
    }
    let (Ok(cmd), Ok(attr)) = (a.arg(0), a.arg(1)) else {
        count_lost(EventKind::Access);
        return 0;
    };
    if cmd != BPF_PROG_LOAD {
        return 0;
    }
    let Some(ev) = new_event(pid, tgid, AccessKind::BpfProgLoad, 0) else {
        count_lost(EventKind::Access);
        return 0;
    };
    // union bpf_attr (UAPI) for BPF_PROG_LOAD: prog_type at 0, prog_name[16] at 48.
    // SAFETY: the helper checks the user address.
    ev.request =
        u64::from(unsafe { bpf_probe_read_user::<u32>(attr as *const u32) }.unwrap_or(u32::MAX));
    // SAFETY: as above.
    ev.name = unsafe { bpf_probe_read_user::<[u8; 16]>((attr + 48) as *const [u8; 16]) }
        .unwrap_or([0; 16]);
    if !kill_fallback_actor(ev, ops::BPF) {
        park(pid, ev);
    }
    0
}

syscall_entry!(
    bpf_sys_enter_bpf_body,
    bpf_sys_enter_bpf = "sys_enter_bpf",
    fentry_bpf
);

//! perf_event_open on another process, bpf program loads, and bpf() on the
//! agent's own objects. The rules on perf and bpf are on the actor alone
//! (there is no target process to protect); a `*_GET_FD_BY_ID` on one of
//! the agent's programs, maps or links is someone reaching for the agent's
//! own instruments.

use agent_common::{AccessKind, EventKind, SELF_PROTECTION, fault, object_kind, ops};
use aya_ebpf::{
    helpers::bpf_probe_read_user,
    macros::{fentry, fexit, tracepoint},
    programs::{FEntryContext, FExitContext, TracePointContext},
};

use super::{
    Args,
    event::{aggregate_or_park, new_event, park},
    exit_ret,
    fallback::{denied_actor, hooks_enforce, kill_if_done, send_parked},
};
use crate::{
    enforce::{self, NO_SLOT, protect},
    ring::{count_fault, count_lost},
    task::{agent_tgid, current_pid_tgid, is_agent},
};

const BPF_PROG_LOAD: u64 = 5;
const BPF_PROG_GET_FD_BY_ID: u64 = 13;
const BPF_MAP_GET_FD_BY_ID: u64 = 14;
const BPF_LINK_GET_FD_BY_ID: u64 = 30;

/// The agent object a `bpf(cmd)` with this command names by id, if it is
/// one of those commands: (object kind, id at the start of `bpf_attr`).
#[inline(always)]
pub(crate) fn object_of(cmd: u64) -> Option<u32> {
    match cmd {
        BPF_PROG_GET_FD_BY_ID => Some(object_kind::PROG),
        BPF_MAP_GET_FD_BY_ID => Some(object_kind::MAP),
        BPF_LINK_GET_FD_BY_ID => Some(object_kind::LINK),
        _ => None,
    }
}

syscall_exit!(send_parked, bpf_sys_exit_bpf = "sys_exit_bpf", fexit_bpf);

syscall_exit!(
    send_parked,
    perf_sys_exit_perf_event_open = "sys_exit_perf_event_open",
    fexit_perf_event_open
);

/// The first `u32` of a syscall's attribute structure in the caller's
/// memory, or `fallback` (counted) when it cannot be read: a bad pointer
/// the syscall itself will refuse with EFAULT.
#[inline(always)]
fn attr_u32(attr: u64, fallback: u32) -> u32 {
    // SAFETY: the helper checks the user address.
    match unsafe { bpf_probe_read_user::<u32>(attr as *const u32) } {
        Ok(v) => v,
        Err(e) => {
            count_fault(fault::SYSCALL_ATTR_READ, i64::from(e));
            fallback
        }
    }
}

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
    let named = if target > 0 { target as u32 } else { 0 };
    let Some(ev) = new_event(pid, tgid, AccessKind::PerfOpen, named) else {
        count_lost(EventKind::Access);
        return 0;
    };
    if named != 0
        && let Some(p) = protect::named(named)
    {
        ev.target_host_pid = p.tgid;
        ev.flags2 |= agent_common::access_flags::TARGET_RESOLVED;
    }
    // SAFETY: the helper checks the user address; perf_event_attr.type is the first u32.
    ev.request = u64::from(attr_u32(attr, u32::MAX));
    ev.arg = u64::from(cpu as u32);
    // BPF-LSM refuses these in its `perf_event_open` hook.
    let slot = denied_actor(ops::PERF);
    if slot != NO_SLOT && hooks_enforce(false) {
        kill_if_done(ev, slot);
        park(pid, ev);
    } else {
        aggregate_or_park(pid, ev);
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
    if let Some(kind) = object_of(cmd) {
        // SAFETY: the helper checks the user address; every *_GET_FD_BY_ID
        // has the object's id first in bpf_attr.
        let id = attr_u32(attr, 0);
        if !enforce::agent_object(kind, id) {
            return 0;
        }
        let Some(ev) = new_event(pid, tgid, AccessKind::AgentObject, agent_tgid()) else {
            count_lost(EventKind::Access);
            return 0;
        };
        ev.request = cmd;
        ev.arg = u64::from(kind) << 32 | u64::from(id);
        if hooks_enforce(false) {
            kill_if_done(ev, SELF_PROTECTION);
        }
        // Parked under BPF-LSM too: its `bpf` hook writes the refusal on
        // this event, which then goes out once, as the refusal it was.
        park(pid, ev);
        return 0;
    }
    if cmd != BPF_PROG_LOAD {
        return 0;
    }
    let Some(ev) = new_event(pid, tgid, AccessKind::BpfProgLoad, 0) else {
        count_lost(EventKind::Access);
        return 0;
    };
    // union bpf_attr (UAPI) for BPF_PROG_LOAD: prog_type at 0, prog_name[16] at 48.
    ev.request = u64::from(attr_u32(attr, u32::MAX));
    // SAFETY: the helper checks the user address.
    ev.name = match unsafe { bpf_probe_read_user::<[u8; 16]>((attr + 48) as *const [u8; 16]) } {
        Ok(name) => name,
        Err(e) => {
            count_fault(fault::SYSCALL_ATTR_READ, i64::from(e));
            [0; 16]
        }
    };
    // BPF-LSM refuses these in its `bpf` hook.
    let slot = denied_actor(ops::BPF);
    if slot != NO_SLOT && hooks_enforce(false) {
        kill_if_done(ev, slot);
    }
    park(pid, ev);
    0
}

syscall_entry!(
    bpf_sys_enter_bpf_body,
    bpf_sys_enter_bpf = "sys_enter_bpf",
    fentry_bpf
);

//! BPF-LSM hooks: the decision is made here, synchronously, before the
//! action happens; a denial returns -EPERM and is reported as an event
//! naming the rule slot. Only loaded where the kernel runs the `bpf` LSM
//! (see the loader); elsewhere the syscall-entry fallback applies.
//!
//! Self-protection: ptrace of the agent and signals to it are refused for
//! everyone but the agent itself, pid 1 (so `systemctl stop` works) and the
//! kernel.

use agent_common::{AccessKind, Enforcement, ops};
use aya_ebpf::{macros::lsm, programs::LsmContext};

use crate::{
    enforce::{NO_SLOT, decide_actor, decide_exec, decide_target},
    probes::access::event::{deny_event, report_denial},
    task::{current_pid_tgid, is_agent, offsets, read_or_zero},
};

const EPERM: i32 = 1;
/// `PTRACE_MODE_ATTACH`: attach, process_vm_*, /proc/<pid>/mem, pidfd_getfd.
const PTRACE_MODE_ATTACH: u32 = 0x02;
/// Slot reported for self-protection denials.
pub(crate) const SELF_PROTECTION: u32 = u32::MAX;
/// `SEND_SIG_PRIV`: a signal the kernel itself sends.
const SEND_SIG_PRIV: u64 = 1;

#[lsm(hook = "ptrace_access_check")]
pub(crate) fn lsm_ptrace_access_check(ctx: LsmContext) -> i32 {
    let child: *const u8 = ctx.arg(0);
    let mode: u32 = ctx.arg(1);
    let (_, tgid) = current_pid_tgid();
    if is_agent(tgid) {
        return 0;
    }
    let off = offsets();
    let target = read_or_zero::<u32>(child, off.task_tgid);
    let slot = if is_agent(target) && mode & PTRACE_MODE_ATTACH != 0 {
        SELF_PROTECTION
    } else if mode & PTRACE_MODE_ATTACH != 0 {
        decide_target(child, target, ops::ATTACH)
    } else {
        NO_SLOT
    };
    match slot {
        NO_SLOT => 0,
        slot => {
            let mut ev = deny_event(AccessKind::LsmAccess, target, slot, Enforcement::DeniedLsm);
            if let Some(e) = ev.as_deref_mut() {
                e.request = u64::from(mode);
            }
            report_denial(ev);
            -EPERM
        }
    }
}

#[lsm(hook = "ptrace_traceme")]
pub(crate) fn lsm_ptrace_traceme(_ctx: LsmContext) -> i32 {
    let (_, tgid) = current_pid_tgid();
    if is_agent(tgid) {
        return 0;
    }
    // SAFETY: helper without preconditions.
    let task = unsafe { aya_ebpf::helpers::generated::bpf_get_current_task() } as *const u8;
    match decide_target(task, tgid, ops::TRACEME) {
        NO_SLOT => 0,
        slot => {
            report_denial(deny_event(
                AccessKind::LsmTraceme,
                0,
                slot,
                Enforcement::DeniedLsm,
            ));
            -EPERM
        }
    }
}

#[lsm(hook = "bprm_check_security")]
pub(crate) fn lsm_bprm_check_security(ctx: LsmContext) -> i32 {
    let bprm: *const u8 = ctx.arg(0);
    let (_, tgid) = current_pid_tgid();
    if is_agent(tgid) {
        return 0;
    }
    let off = offsets();
    let file = read_or_zero::<*const u8>(bprm, off.bprm_file);
    let inode = read_or_zero::<*const u8>(file, off.file_f_inode);
    let ino = read_or_zero::<u64>(inode, off.inode_i_ino);
    let sb = read_or_zero::<*const u8>(inode, off.inode_i_sb);
    let dev = read_or_zero::<u32>(sb, off.sb_s_dev);
    match decide_exec(ino, dev) {
        NO_SLOT => 0,
        slot => {
            let mut ev = deny_event(AccessKind::LsmExec, 0, slot, Enforcement::DeniedLsm);
            if let Some(e) = ev.as_deref_mut() {
                e.arg = ino;
            }
            report_denial(ev);
            -EPERM
        }
    }
}

#[lsm(hook = "task_kill")]
pub(crate) fn lsm_task_kill(ctx: LsmContext) -> i32 {
    let target: *const u8 = ctx.arg(0);
    let info: u64 = ctx.arg(1);
    let sig: i32 = ctx.arg(2);
    let (_, tgid) = current_pid_tgid();
    let off = offsets();
    let target_tgid = read_or_zero::<u32>(target, off.task_tgid);
    // Signal 0 only probes for existence; pid 1 stops services; the kernel's
    // own signals (SEND_SIG_PRIV) must always pass.
    if !is_agent(target_tgid) || is_agent(tgid) || tgid == 1 || sig == 0 || info == SEND_SIG_PRIV {
        return 0;
    }
    let mut ev = deny_event(
        AccessKind::LsmKill,
        target_tgid,
        SELF_PROTECTION,
        Enforcement::DeniedLsm,
    );
    if let Some(e) = ev.as_deref_mut() {
        e.request = sig as u64;
    }
    report_denial(ev);
    -EPERM
}

#[lsm(hook = "perf_event_open")]
pub(crate) fn lsm_perf_event_open(ctx: LsmContext) -> i32 {
    let (_, tgid) = current_pid_tgid();
    if is_agent(tgid) {
        return 0;
    }
    let kind: i32 = ctx.arg(1);
    match decide_actor(ops::PERF) {
        NO_SLOT => 0,
        slot => {
            let mut ev = deny_event(AccessKind::LsmPerf, 0, slot, Enforcement::DeniedLsm);
            if let Some(e) = ev.as_deref_mut() {
                e.request = kind as u64;
            }
            report_denial(ev);
            -EPERM
        }
    }
}

#[lsm(hook = "bpf")]
pub(crate) fn lsm_bpf(ctx: LsmContext) -> i32 {
    let (_, tgid) = current_pid_tgid();
    if is_agent(tgid) {
        return 0;
    }
    let cmd: i32 = ctx.arg(0);
    // Only program loads are policy's business; other commands (map
    // lookups, object queries) are what every BPF tool and systemd do.
    if cmd != 5 {
        return 0;
    }
    match decide_actor(ops::BPF) {
        NO_SLOT => 0,
        slot => {
            let mut ev = deny_event(AccessKind::LsmBpf, 0, slot, Enforcement::DeniedLsm);
            if let Some(e) = ev.as_deref_mut() {
                e.request = cmd as u64;
            }
            report_denial(ev);
            -EPERM
        }
    }
}

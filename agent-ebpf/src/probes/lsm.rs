//! BPF-LSM hooks: the decision is made here, synchronously, before the
//! action happens; a denial returns -EPERM. When the syscall that met the
//! refusal was parked by its hook, the refusal is written on that event,
//! which goes out once, with the syscall's result; otherwise the hook sends
//! an event of its own, naming the rule slot. Only loaded where the kernel
//! runs the `bpf` LSM (see the loader); elsewhere the syscall hooks'
//! fallback applies.
//!
//! Self-protection: ptrace of the agent, signals to it and bpf() on its
//! programs, maps and links are refused for everyone but the agent itself,
//! pid 1 for signals (so `systemctl stop` works) and the kernel.

use agent_common::{
    AccessKind, Enforcement, OFFSET_ABSENT, Protected, SELF_PROTECTION, ops, ptrace_writes,
};
use aya_ebpf::{
    helpers::generated::{bpf_get_current_task, bpf_get_current_task_btf, bpf_task_pt_regs},
    macros::lsm,
    programs::LsmContext,
};

use crate::{
    enforce::{
        self, NO_SLOT,
        identity::{self, Identity},
        protect,
    },
    probes::access::{
        event::{deny_event, note_refusal, report_denial},
        fallback::actor_uid,
        perf_bpf::object_of,
    },
    task::{
        agent_tgid, current_pid_tgid, is_agent, offsets, person_uid, read_or_zero, real_uid,
        start_tick,
    },
};

const EPERM: i32 = 1;
/// `PTRACE_MODE_ATTACH`: attach, process_vm_*, /proc/<pid>/mem, pidfd_getfd.
const PTRACE_MODE_ATTACH: u32 = 0x02;
/// `SEND_SIG_PRIV`: a signal the kernel itself sends.
const SEND_SIG_PRIV: u64 = 1;
/// `task_struct.ptrace & PT_PTRACED`: the task has a tracer.
const PT_PTRACED: u32 = 1;

/// Refuses: on the parked syscall event if there is one, else in an event
/// of its own made by `event`.
#[inline(always)]
fn refuse(slot: u32, event: impl FnOnce()) -> i32 {
    if !note_refusal(slot) {
        event();
    }
    -EPERM
}

/// Whether the syscall the current task is in changes the process it
/// names ([`ops::WRITE`]): process_vm_writev, pidfd_getfd, a ptrace
/// request that writes (PTRACE_SEIZE with EXITKILL). The hook itself sees
/// only "a PTRACE_MODE_ATTACH access"; the syscall and its arguments say
/// which.
#[inline(always)]
fn syscall_writes() -> bool {
    let off = offsets();
    if off.pt_regs_syscall_nr == OFFSET_ABSENT {
        return false;
    }
    // SAFETY: helpers without preconditions; the task pointer is the
    // BTF-typed current task the second one requires.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as *const u8;
    let nr = read_or_zero::<u64>(regs, off.pt_regs_syscall_nr) as u32;
    if nr == off.sys_own_hook[2] || nr == off.sys_pidfd_getfd {
        return true;
    }
    nr == off.sys_own_hook[0]
        && ptrace_writes(
            read_or_zero::<u64>(regs, off.sys_args[0]),
            read_or_zero::<u64>(regs, off.sys_args[3]),
        )
}

#[lsm(hook = "ptrace_access_check")]
pub(crate) fn lsm_ptrace_access_check(ctx: LsmContext) -> i32 {
    let child: *const u8 = ctx.arg(0);
    let mode: u32 = ctx.arg(1);
    let (_, tgid) = current_pid_tgid();
    if is_agent(tgid) || mode & PTRACE_MODE_ATTACH == 0 {
        return 0;
    }
    let off = offsets();
    let target = read_or_zero::<u32>(child, off.task_tgid);
    let slot = if is_agent(target) {
        SELF_PROTECTION
    } else {
        match protect::of_task_or_identity(child) {
            Some(p) if syscall_writes() => {
                enforce::decide(&p, ops::ATTACH | ops::WRITE, actor_uid())
            }
            Some(p) => enforce::decide(&p, ops::ATTACH, actor_uid()),
            None => NO_SLOT,
        }
    };
    if slot == NO_SLOT {
        return 0;
    }
    refuse(slot, || {
        let mut ev = deny_event(AccessKind::LsmAccess, target, slot, Enforcement::DeniedLsm);
        if let Some(e) = ev.as_deref_mut() {
            e.request = u64::from(mode);
        }
        report_denial(ev);
    })
}

#[lsm(hook = "ptrace_traceme")]
pub(crate) fn lsm_ptrace_traceme(_ctx: LsmContext) -> i32 {
    let (_, tgid) = current_pid_tgid();
    if is_agent(tgid) {
        return 0;
    }
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let slot = match protect::of_task_or_identity(task) {
        Some(p) => enforce::decide(&p, ops::TRACEME, actor_uid()),
        None => NO_SLOT,
    };
    if slot == NO_SLOT {
        return 0;
    }
    refuse(slot, || {
        report_denial(deny_event(
            AccessKind::LsmTraceme,
            0,
            slot,
            Enforcement::DeniedLsm,
        ));
    })
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
    match enforce::decide_exec(ino, dev, actor_uid()) {
        NO_SLOT => {}
        slot => {
            let mut ev = deny_event(AccessKind::LsmExec, 0, slot, Enforcement::DeniedLsm);
            if let Some(e) = ev.as_deref_mut() {
                e.arg = ino;
            }
            report_denial(ev);
            return -EPERM;
        }
    }
    traced_exec(file, ino, dev, tgid)
}

/// A traced task exec'ing a protected program would hand its tracer a
/// protected process that no attach was checked for: refused, unless the
/// tracer may debug it (exempt, or granted).
#[inline(always)]
fn traced_exec(file: *const u8, ino: u64, dev: u32, tgid: u32) -> i32 {
    if !identity::any() {
        return 0;
    }
    let off = offsets();
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    if read_or_zero::<u32>(task, off.task_ptrace) & PT_PTRACED == 0 {
        return 0;
    }
    // The comm the new program will have is its file's name here (a
    // symlink's own name is what a comm rule would see after the exec).
    let dentry = read_or_zero::<*const u8>(file, off.file_f_path_dentry);
    let name = read_or_zero::<*const u8>(dentry, off.dentry_name);
    let mut comm = [0u8; 16];
    // SAFETY: the helper bounds the copy by the buffer and checks the source.
    unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_kernel_str(
            comm.as_mut_ptr().cast(),
            16,
            name.cast(),
        );
    }
    let unit = identity::unit_of(task);
    let id = Identity {
        ino,
        dev,
        comm,
        unit,
        uid: real_uid(task),
    };
    let slot = identity::slot_of(&id);
    if slot == NO_SLOT {
        return 0;
    }
    let tracer = read_or_zero::<*const u8>(task, off.task_parent);
    let p = Protected {
        slot,
        tgid,
        start_tick: start_tick(task),
        unit,
    };
    let slot = enforce::decide(&p, ops::ATTACH, person_uid(tracer));
    if slot == NO_SLOT {
        return 0;
    }
    let mut ev = deny_event(AccessKind::ExecTraced, tgid, slot, Enforcement::DeniedLsm);
    if let Some(e) = ev.as_deref_mut() {
        e.arg = u64::from(read_or_zero::<u32>(tracer, off.task_tgid));
        e.target_host_pid = tgid;
        e.flags2 |= agent_common::access_flags::TARGET_RESOLVED;
    }
    report_denial(ev);
    -EPERM
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
    match enforce::decide_actor(ops::PERF, actor_uid()) {
        NO_SLOT => 0,
        slot => refuse(slot, || {
            let mut ev = deny_event(AccessKind::LsmPerf, 0, slot, Enforcement::DeniedLsm);
            if let Some(e) = ev.as_deref_mut() {
                e.request = kind as u64;
            }
            report_denial(ev);
        }),
    }
}

#[lsm(hook = "bpf")]
pub(crate) fn lsm_bpf(ctx: LsmContext) -> i32 {
    let (_, tgid) = current_pid_tgid();
    if is_agent(tgid) {
        return 0;
    }
    let cmd: i32 = ctx.arg(0);
    let attr: *const u8 = ctx.arg(1);
    if let Some(kind) = object_of(cmd as u64) {
        // The kernel's copy of bpf_attr: the object's id comes first.
        let id = read_or_zero::<u32>(attr, 0);
        if !enforce::agent_object(kind, id) {
            return 0;
        }
        return refuse(SELF_PROTECTION, || {
            let mut ev = deny_event(
                AccessKind::AgentObject,
                agent_tgid(),
                SELF_PROTECTION,
                Enforcement::DeniedLsm,
            );
            if let Some(e) = ev.as_deref_mut() {
                e.request = cmd as u64;
                e.arg = u64::from(kind) << 32 | u64::from(id);
            }
            report_denial(ev);
        });
    }
    // Only program loads are policy's business; other commands (map
    // lookups, object queries) are what every BPF tool and systemd do.
    if cmd != 5 {
        return 0;
    }
    match enforce::decide_actor(ops::BPF, actor_uid()) {
        NO_SLOT => 0,
        slot => refuse(slot, || {
            let mut ev = deny_event(AccessKind::LsmBpf, 0, slot, Enforcement::DeniedLsm);
            if let Some(e) = ev.as_deref_mut() {
                e.request = cmd as u64;
            }
            report_denial(ev);
        }),
    }
}

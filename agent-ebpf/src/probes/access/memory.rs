//! Another process's memory and descriptors: process_vm_readv/writev and
//! pidfd_getfd. A first occurrence is sent at the syscall's exit, with its
//! result (and a BPF-LSM refusal, if there was one); repeats are counted.

use agent_common::{AccessKind, EventKind, access_flags};
use aya_ebpf::{
    macros::{fentry, fexit, tracepoint},
    programs::{FEntryContext, FExitContext, TracePointContext},
};

use super::{
    Args,
    event::{aggregate_or_park, new_event, park},
    exit_ret,
    fallback::{denied, hooks_enforce, kill_if_done, op_of, send_parked},
    procfs::fd_file,
};
use crate::{
    enforce::{NO_SLOT, protect},
    ring::count_lost,
    task::{current_pid_tgid, is_agent, offsets, read_field},
};

#[inline(always)]
fn vm_access(a: Args, kind: AccessKind) {
    let (pid, tgid) = current_pid_tgid();
    if is_agent(tgid) {
        return;
    }
    let Ok(target) = a.arg(0) else {
        count_lost(EventKind::Access);
        return;
    };
    let target = target as u32;
    let Some(ev) = new_event(pid, tgid, kind, target) else {
        count_lost(EventKind::Access);
        return;
    };
    if kind == AccessKind::VmWritev {
        ev.flags2 |= access_flags::WRITES;
    }
    let p = protect::named(target);
    if let Some(p) = &p {
        ev.target_host_pid = p.tgid;
        ev.flags2 |= access_flags::TARGET_RESOLVED;
    }
    // BPF-LSM refuses these in `ptrace_access_check` (through mm_access).
    let slot = denied(&p, op_of(ev));
    if slot != NO_SLOT && hooks_enforce(false) {
        kill_if_done(ev, slot);
        park(pid, ev);
    } else {
        aggregate_or_park(pid, ev);
    }
}

#[inline(always)]
fn mem_sys_enter_process_vm_readv_body(a: Args) -> u32 {
    vm_access(a, AccessKind::VmReadv);
    0
}

syscall_exit!(
    send_parked,
    mem_sys_exit_process_vm_readv = "sys_exit_process_vm_readv",
    fexit_process_vm_readv
);

syscall_entry!(
    mem_sys_enter_process_vm_readv_body,
    mem_sys_enter_process_vm_readv = "sys_enter_process_vm_readv",
    fentry_process_vm_readv
);

#[inline(always)]
fn mem_sys_enter_process_vm_writev_body(a: Args) -> u32 {
    vm_access(a, AccessKind::VmWritev);
    0
}

syscall_exit!(
    send_parked,
    mem_sys_exit_process_vm_writev = "sys_exit_process_vm_writev",
    fexit_process_vm_writev
);

syscall_entry!(
    mem_sys_enter_process_vm_writev_body,
    mem_sys_enter_process_vm_writev = "sys_enter_process_vm_writev",
    fentry_process_vm_writev
);

#[inline(always)]
fn mem_sys_enter_pidfd_getfd_body(a: Args) -> u32 {
    let (pid, tgid) = current_pid_tgid();
    if is_agent(tgid) {
        return 0;
    }
    let (Ok(pidfd), Ok(targetfd)) = (a.arg(0), a.arg(1)) else {
        count_lost(EventKind::Access);
        return 0;
    };
    let Some(ev) = new_event(pid, tgid, AccessKind::PidfdGetfd, 0) else {
        count_lost(EventKind::Access);
        return 0;
    };
    ev.arg = targetfd;
    // Taking a descriptor out of a process is using it as that process.
    ev.flags2 |= access_flags::WRITES;
    let mut p = None;
    if let Some(host_pid) = pidfd_to_pid(pidfd as u32) {
        ev.target_pid = host_pid;
        ev.target_host_pid = host_pid;
        ev.flags2 |= access_flags::TARGET_RESOLVED;
        p = protect::host_named(host_pid);
        if let Some(p) = &p {
            // The pidfd may name a thread: the record names its process.
            ev.target_host_pid = p.tgid;
        }
    }
    let slot = denied(&p, op_of(ev));
    if slot != NO_SLOT && hooks_enforce(false) {
        kill_if_done(ev, slot);
    }
    park(pid, ev);
    0
}

syscall_exit!(
    send_parked,
    mem_sys_exit_pidfd_getfd = "sys_exit_pidfd_getfd",
    fexit_pidfd_getfd
);

syscall_entry!(
    mem_sys_enter_pidfd_getfd_body,
    mem_sys_enter_pidfd_getfd = "sys_enter_pidfd_getfd",
    fentry_pidfd_getfd
);

/// current->files->fdt->fd[pidfd]->private_data is the pidfd's `struct pid`;
/// its level-0 number is the host pid.
#[inline(always)]
fn pidfd_to_pid(fd: u32) -> Option<u32> {
    let off = offsets();
    let file = fd_file(off, fd)?;
    let pid = if off.pidfd_in_inode == 1 {
        let inode = read_field::<*const u8>(file, off.file_f_inode).ok()?;
        read_field::<*const u8>(inode, off.inode_i_private).ok()?
    } else {
        read_field::<*const u8>(file, off.file_private_data).ok()?
    };
    if off.pid_numbers == agent_common::OFFSET_ABSENT {
        return None;
    }
    read_field::<u32>(pid, off.pid_numbers + off.upid_nr).ok()
}

//! `sched/sched_process_exec`: the new image is in place, so the task's
//! comm, credentials and argv (in the new `mm`) are those of the program
//! that now runs. The event is assembled in a per-CPU scratch buffer and
//! copied to the ring buffer trimmed to its real length: a typical exec costs
//! a few hundred bytes of ring space instead of the 8 KiB worst case.

use core::{ffi::c_void, mem::size_of, ptr::addr_of_mut};

use agent_common::{
    ARGV_CAP, CWD_CAP, EXEC_EVENT_MAX, EventKind, ExecEvent, FILENAME_CAP, OFFSET_ABSENT, TTY_LEN,
    fault, flags,
};
use aya_ebpf::{
    EbpfContext as _,
    helpers::generated::{
        bpf_get_current_cgroup_id, bpf_get_current_task, bpf_ktime_get_boot_ns,
        bpf_probe_read_kernel_str, bpf_probe_read_user,
    },
    macros::tracepoint,
    programs::TracePointContext,
};

use crate::{
    ring::{EVENTS, EXEC_SCRATCH, count_fault, count_lost, wake_if_idle},
    task::{
        current_comm, current_pid_tgid, is_agent, offsets, read_creds, read_cwd, read_ns,
        read_or_zero, read_tty,
    },
};

#[inline(always)]
fn mm_of(task: *const u8, off: &agent_common::KernelOffsets) -> *const u8 {
    read_or_zero::<*const u8>(task, off.task_mm)
}

// Both caps are powers of two, which lets a mask prove bounds to the verifier.
const _: () = assert!(FILENAME_CAP.is_power_of_two() && ARGV_CAP.is_power_of_two());

#[tracepoint(category = "sched", name = "sched_process_exec")]
pub(crate) fn exec_sched_process_exec(ctx: TracePointContext) -> u32 {
    let (pid, tgid) = current_pid_tgid();
    if is_agent(tgid) {
        return 0;
    }
    if try_exec(&ctx, pid, tgid).is_err() {
        count_lost(EventKind::Exec);
    }
    0
}

fn try_exec(ctx: &TracePointContext, pid: u32, tgid: u32) -> Result<(), i64> {
    let off = offsets();
    let scratch = EXEC_SCRATCH.get_ptr_mut(0).ok_or(-1i64)?;
    // SAFETY: the pointer comes from a per-CPU array lookup and is valid and
    // exclusive to this CPU for the duration of the program.
    let ev: &mut ExecEvent = unsafe { &mut (*scratch).event };
    let data: *mut u8 = unsafe { addr_of_mut!((*scratch).data) }.cast::<u8>();
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() } as *const u8;

    // Fields are written straight into the map value (no stack copy), and
    // the branchy reads come first: the lengths that size the copies below
    // must stay precise for the verifier, and keeping them out of the
    // branches above keeps older verifiers (6.1) within their budget.
    ev.header.kind = EventKind::Exec as u32;
    ev.header.flags = 0;
    // SAFETY: helper without preconditions.
    ev.header.ktime_ns = unsafe { bpf_ktime_get_boot_ns() };
    ev.header.pid = pid;
    ev.header.tgid = tgid;
    ev.header.start_ns = read_or_zero::<u64>(task, off.task_start_boottime);
    let parent = read_or_zero::<*const u8>(task, off.task_real_parent);
    ev.ppid = read_or_zero::<u32>(parent, off.task_tgid);
    ev.old_pid = if off.tp_exec_old_pid == OFFSET_ABSENT {
        pid
    } else {
        // SAFETY: the offset comes from the tracepoint's format file.
        unsafe { ctx.read_at::<u32>(off.tp_exec_old_pid as usize) }.unwrap_or(pid)
    };
    ev.creds = read_creds(task, off, &mut ev.header.flags);
    ev.ns = read_ns(task, off);
    ev.tty = [0; TTY_LEN];
    read_tty(task, off, &mut ev.tty);
    // SAFETY: helper without preconditions.
    ev.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    ev.comm = current_comm();
    // The file that runs, by identity: no path or name a user can choose.
    let exe_file = read_or_zero::<*const u8>(mm_of(task, off), off.mm_exe_file);
    let inode = read_or_zero::<*const u8>(exe_file, off.file_f_inode);
    ev.exe_ino = read_or_zero::<u64>(inode, off.inode_i_ino);
    let sb = read_or_zero::<*const u8>(inode, off.inode_i_sb);
    ev.exe_dev = read_or_zero::<u32>(sb, off.sb_s_dev);
    ev.exe_uid = read_or_zero::<u32>(inode, off.inode_i_uid);
    ev.exe_mode = u32::from(read_or_zero::<u16>(inode, off.inode_i_mode));
    ev._pad = 0;

    // Path of the executed file: a `__data_loc` field whose low 16 bits are
    // the string's offset inside the tracepoint record.
    let mut filename_len = 0u32;
    // The helper's return, for the fault log: -1 when there was nothing to read.
    let mut filename_err = -1i64;
    let loc: Result<u32, i32> = if off.tp_exec_filename == OFFSET_ABSENT {
        Err(-1)
    } else {
        // SAFETY: the offset comes from the tracepoint's format file.
        unsafe { ctx.read_at::<u32>(off.tp_exec_filename as usize) }
    };
    if let Ok(loc) = loc {
        let src = ctx
            .as_ptr()
            .cast::<u8>()
            .wrapping_add((loc & 0xffff) as usize);
        // SAFETY: the helper bounds the copy by `FILENAME_CAP` and checks `src`.
        let n = unsafe {
            bpf_probe_read_kernel_str(data.cast::<c_void>(), FILENAME_CAP as u32, src.cast())
        };
        filename_err = n;
        if n > 0 {
            // `n` counts the NUL; PATH_MAX bounds it to FILENAME_CAP.
            filename_len = ((n - 1) as u32) & (FILENAME_CAP as u32 - 1);
        }
    }
    if filename_len == 0 {
        ev.header.flags |= flags::FILENAME_READ_FAILED;
        count_fault(fault::EXEC_FILENAME_READ, filename_err);
    }

    // argv lives in the new image's memory between mm.arg_start and arg_end.
    let mut argv_len = 0u32;
    let mut argv_total = 0u32;
    let mm = read_or_zero::<*const u8>(task, off.task_mm);
    let start = read_or_zero::<u64>(mm, off.mm_arg_start);
    let end = read_or_zero::<u64>(mm, off.mm_arg_end);
    if start != 0 && end >= start {
        let total = end - start;
        argv_total = if total > u64::from(u32::MAX) {
            u32::MAX
        } else {
            total as u32
        };
        let mut want = total;
        if want > ARGV_CAP as u64 {
            want = ARGV_CAP as u64;
            ev.header.flags |= flags::ARGV_TRUNCATED;
        }
        let want = want as u32;
        if want > 0 && want <= ARGV_CAP as u32 {
            let dst = data.wrapping_add(filename_len as usize);
            // SAFETY: `dst + want` stays inside the scratch buffer
            // (filename_len < FILENAME_CAP, want <= ARGV_CAP); the helper
            // checks the user address.
            let r =
                unsafe { bpf_probe_read_user(dst.cast::<c_void>(), want, start as *const c_void) };
            if r == 0 {
                argv_len = want;
            } else {
                ev.header.flags |= flags::ARGV_READ_FAILED;
                count_fault(fault::EXEC_ARGV_READ, r);
            }
        }
    } else {
        ev.header.flags |= flags::ARGV_READ_FAILED;
        // No argv range: the new image has no mm (or it was unreadable).
        count_fault(fault::EXEC_ARGV_READ, -1);
    }
    // The working directory's names follow argv. The mask changes nothing
    // (filename_len < FILENAME_CAP, argv_len <= ARGV_CAP) but proves it.
    let cwd_at = (filename_len + argv_len) & (FILENAME_CAP + ARGV_CAP - 1) as u32;
    read_cwd(
        task,
        off,
        data.wrapping_add(cwd_at as usize),
        &raw mut ev.cwd_len,
        &raw mut ev.header.flags,
    );
    // At most CWD_CAP; the mask proves it. The names of a walk that did
    // not finish are not sent: the agent reads /proc instead.
    let cwd_len = if ev.header.flags & flags::CWD_RESOLVED != 0 {
        ev.cwd_len & (CWD_CAP as u32 * 2 - 1)
    } else {
        0
    };
    ev.cwd_len = cwd_len;
    ev.filename_len = filename_len;
    ev.argv_len = argv_len;
    ev.argv_total_len = argv_total;

    let size =
        size_of::<ExecEvent>() + filename_len as usize + argv_len as usize + cwd_len as usize;
    // SAFETY: the scratch value is EXEC_EVENT_MAX bytes long.
    let bytes = unsafe { core::slice::from_raw_parts(scratch.cast::<u8>(), EXEC_EVENT_MAX) };
    let out = bytes.get(..size).ok_or(-1i64)?;
    EVENTS
        .output::<[u8]>(out, wake_if_idle())
        .map_err(i64::from)
}

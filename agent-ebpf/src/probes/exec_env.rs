//! The switches in a new program's environment that turn debugging or
//! injection on (`LD_PRELOAD`, `JAVA_TOOL_OPTIONS`, `NODE_OPTIONS`, ...:
//! the names the agent puts in `ENV_NAMES`), read from the new image at
//! exec, before the program can change them. Only those variables leave
//! the kernel, never the rest of the environment, and only when one is
//! there: most execs send nothing.
//!
//! The environment is walked one variable at a time (`bpf_probe_read_user_str`
//! gives each one's length), in a `bpf_loop` callback so the verifier
//! checks one step, not every path through hundreds. Attached before the
//! exec recorder on the same tracepoint: the event comes first in the ring,
//! and the agent puts it on that exec's record.

use core::{ffi::c_void, mem::size_of};

use agent_common::{ENV_CAP, ENV_NAMES, ENV_VAR_ROOM, EnvName, EventKind, ExecEnvEvent, env_flags};
use aya_ebpf::{
    helpers::generated::{
        bpf_get_current_task, bpf_ktime_get_boot_ns, bpf_loop, bpf_probe_read_kernel,
        bpf_probe_read_user_str,
    },
    macros::{map, tracepoint},
    maps::{Array, PerCpuArray},
    programs::TracePointContext,
};

use crate::{
    ring::{EVENTS, count_lost, wake_if_idle},
    task::{current_pid_tgid, is_agent, offsets, read_or_zero},
};

#[map(name = "ENV_NAMES")]
static ENV_NAMES_MAP: Array<EnvName> = Array::with_max_entries(ENV_NAMES as u32, 0);

/// Where the event is assembled, and the variable being looked at.
#[repr(C)]
struct Scratch {
    event: ExecEnvEvent,
    var: [u8; ENV_VAR_ROOM],
}

#[map(name = "ENV_SCRATCH")]
static ENV_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Steps of the walk: a variable each, or 255 bytes of a long one. An
/// environment that needs more is reported as not fully scanned.
const MAX_STEPS: u32 = 1024;

/// The walk's state, on the program's stack.
#[repr(C)]
struct Walk {
    at: u64,
    end: u64,
    /// The next read starts a variable (not the rest of a long one).
    at_start: u32,
    names: u32,
}

#[tracepoint(category = "sched", name = "sched_process_exec")]
pub(crate) fn exec_env_sched_process_exec(_ctx: TracePointContext) -> u32 {
    let (pid, tgid) = current_pid_tgid();
    if is_agent(tgid) {
        return 0;
    }
    let names = configured_names();
    if names == 0 {
        return 0;
    }
    let Some(s) = ENV_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    let off = offsets();
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let mm = read_or_zero::<*const u8>(task, off.task_mm);
    let mut walk = Walk {
        at: read_or_zero::<u64>(mm, off.mm_env_start),
        end: read_or_zero::<u64>(mm, off.mm_env_end),
        at_start: 1,
        names,
    };
    if walk.at == 0 || walk.end <= walk.at {
        return 0;
    }
    // SAFETY: a per-CPU map value, exclusive to this CPU while the program runs.
    let ev = unsafe { &mut (*s).event };
    ev.len = 0;
    ev.flags = 0;
    // SAFETY: the callback is a static function with the signature
    // bpf_loop expects; `walk` outlives the call.
    unsafe {
        bpf_loop(
            MAX_STEPS,
            step as *mut c_void,
            (&raw mut walk).cast::<c_void>(),
            0,
        );
    }
    if walk.at < walk.end {
        ev.flags |= env_flags::INCOMPLETE;
    }
    if ev.len == 0 && ev.flags == 0 {
        return 0;
    }
    ev.header.kind = EventKind::ExecEnv as u32;
    ev.header.flags = 0;
    // SAFETY: helper without preconditions.
    ev.header.ktime_ns = unsafe { bpf_ktime_get_boot_ns() };
    ev.header.pid = pid;
    ev.header.tgid = tgid;
    ev.header.start_ns = read_or_zero::<u64>(task, off.task_start_boottime);
    let size = size_of::<ExecEnvEvent>() - (ENV_CAP + ENV_VAR_ROOM)
        + (ev.len as usize & (ENV_CAP * 2 - 1));
    // SAFETY: the event is size_of::<ExecEnvEvent>() bytes.
    let bytes = unsafe {
        core::slice::from_raw_parts((&raw const *ev).cast::<u8>(), size_of::<ExecEnvEvent>())
    };
    match bytes.get(..size) {
        Some(out) if EVENTS.output::<[u8]>(out, wake_if_idle()).is_ok() => {}
        // The exec's record goes out without its switches: counted as an
        // exec that was not fully delivered.
        _ => count_lost(EventKind::Exec),
    }
    0
}

/// How many names are set (the list ends at the first empty one).
#[inline(always)]
fn configured_names() -> u32 {
    let mut n = 0;
    while n < ENV_NAMES as u32 {
        match ENV_NAMES_MAP.get(n) {
            Some(e) if e.mask != 0 => n += 1,
            _ => break,
        }
    }
    n
}

/// One step: read the next variable (or the next 255 bytes of a long
/// one); keep it when it starts with a configured name.
unsafe extern "C" fn step(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer to the caller's `Walk`.
    let walk = unsafe { &mut *ctx.cast::<Walk>() };
    if walk.at >= walk.end {
        return 1;
    }
    let Some(s) = ENV_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: a per-CPU map value, exclusive to this CPU.
    let s = unsafe { &mut *s };
    // SAFETY: the helper bounds the copy by the buffer and checks the address.
    let n = unsafe {
        bpf_probe_read_user_str(
            s.var.as_mut_ptr().cast::<c_void>(),
            ENV_VAR_ROOM as u32,
            walk.at as *const c_void,
        )
    };
    if n <= 0 {
        walk.at = walk.end;
        return 1;
    }
    let mut n = n as u64;
    let starts = walk.at_start != 0;
    // A full buffer: the helper wrote a NUL after 255 bytes whether or not
    // the string ended there. The byte in user memory tells.
    let mut cut = false;
    if n as usize == ENV_VAR_ROOM {
        // SAFETY: a one-byte read of a user address the helper checks.
        let next = unsafe {
            aya_ebpf::helpers::bpf_probe_read_user::<u8>(
                (walk.at + ENV_VAR_ROOM as u64 - 1) as *const u8,
            )
        };
        if next != Ok(0) {
            cut = true;
            n -= 1;
        }
    }
    walk.at += n;
    walk.at_start = u32::from(!cut);
    if !starts || !wanted(s, walk.names) {
        return 0;
    }
    let ev = &mut s.event;
    if cut {
        ev.flags |= env_flags::VALUE_CUT;
    }
    let at = ev.len as usize;
    if at + n as usize > ENV_CAP {
        ev.flags |= env_flags::FULL;
        return 0;
    }
    // SAFETY: `at < ENV_CAP` and `n <= ENV_VAR_ROOM`, so the copy ends
    // inside `data` (ENV_CAP + ENV_VAR_ROOM bytes); the masks prove it.
    unsafe {
        bpf_probe_read_kernel(
            ev.data
                .as_mut_ptr()
                .wrapping_add(at & (ENV_CAP - 1))
                .cast::<c_void>(),
            (n as u32) & (ENV_VAR_ROOM as u32 * 2 - 1),
            s.var.as_ptr().cast::<c_void>(),
        );
    }
    ev.len = (at + n as usize) as u32;
    0
}

/// Whether the variable in `s.var` starts with one of the configured names.
#[inline(always)]
fn wanted(s: &Scratch, names: u32) -> bool {
    let head = u64::from_le_bytes([
        s.var[0], s.var[1], s.var[2], s.var[3], s.var[4], s.var[5], s.var[6], s.var[7],
    ]);
    let mut i = 0;
    while i < ENV_NAMES as u32 {
        if i >= names {
            break;
        }
        if let Some(e) = ENV_NAMES_MAP.get(i)
            && head & e.mask == e.prefix
        {
            return true;
        }
        i += 1;
    }
    false
}

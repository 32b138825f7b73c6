//! One process reaching into another: ptrace, process_vm_readv/writev,
//! opens of /proc/<pid>/mem and /proc/<pid>/environ, perf_event_open on
//! another pid, bpf program loads, pidfd_getfd. Each hook exists twice:
//! as an fentry program on the syscall function (`__x64_sys_*`, plus fexit
//! where the result matters), which the agent prefers, and as a
//! `syscalls/sys_enter_*` (`sys_exit_*`) tracepoint, its fallback where the
//! kernel refuses BPF trampolines. The tracepoints cost every process on
//! the host: enabling one sends every syscall through the syscall-tracing
//! slow path, while a trampoline costs only the hooked syscall.
//!
//! Opens of a process's `mem` and `environ` are seen twice over: by the
//! path at the open's entry (which also sees attempts that fail), and by
//! what was opened at its exit, which catches every other way to the same
//! file (relative paths, dirfds, symlinks, `/proc/<pid>/task/<tid>/`).
//! io_uring opens are judged the same way, by the opened file, when their
//! completion is posted. And every read or write of a process's `mem` or
//! `environ` is judged once more as it happens, at the lock of the
//! target's address space, whatever way the file was opened or reached.
//!
//! Flood control happens here, not in userspace: high-rate accesses
//! (PEEK/POKE and register requests, process_vm_*, perf opens) send their
//! first occurrence per (actor, target, kind, request) at once and only count
//! the rest in `AGG`, which the agent reports as aggregates.
//!
//! - `event`: building, sending, parking and counting access events
//! - `fallback`: the kill fallback where BPF-LSM is missing
//! - `ptrace`, `memory` (process_vm_*, pidfd_getfd), `procfs` (opens of
//!   `mem` and `environ`), `perf_bpf`, `io_uring`: one module per vector
//! - `address_space`: reads and writes of `mem` and `environ` as they
//!   happen
//! - `signal` (debug-trigger signals to another process), `listen` (a
//!   socket starting to listen): how runtime debuggers are switched on

use agent_common::OFFSET_ABSENT;
use aya_ebpf::{
    EbpfContext as _,
    programs::{FEntryContext, TracePointContext},
};

use crate::task::{read_field, sys_arg_offset, tp_sys_offsets};

/// A syscall entry hook twice, on one body: as the `sys_enter_*`
/// tracepoint `$tp` and as the fentry program `$fentry`.
macro_rules! syscall_entry {
    ($body:ident, $tp:ident = $tp_name:literal, $fentry:ident) => {
        #[tracepoint(category = "syscalls", name = $tp_name)]
        pub(crate) fn $tp(ctx: TracePointContext) -> u32 {
            $body(Args::record(&ctx))
        }

        #[fentry]
        pub(crate) fn $fentry(ctx: FEntryContext) -> u32 {
            $body(Args::regs(&ctx))
        }
    };
}

/// A syscall exit hook twice, on one body taking the return value (`None`
/// when the tracepoint record could not be read): as the `sys_exit_*`
/// tracepoint `$tp` and as the fexit program `$fexit`.
macro_rules! syscall_exit {
    ($body:ident, $tp:ident = $tp_name:literal, $fexit:ident) => {
        #[tracepoint(category = "syscalls", name = $tp_name)]
        pub(crate) fn $tp(ctx: TracePointContext) -> u32 {
            $body(exit_ret(&ctx));
            0
        }

        /// The return value is the argument after the `pt_regs` pointer.
        #[fexit]
        pub(crate) fn $fexit(ctx: FExitContext) -> u32 {
            $body(Some(ctx.arg::<i64>(1)));
            0
        }
    };
}

/// Where the hooked syscall's arguments are.
#[derive(Clone, Copy)]
pub(super) enum Args {
    /// A `sys_enter_*` tracepoint record.
    Record(*const u8),
    /// The `struct pt_regs` a syscall function gets as its only parameter.
    Regs(*const u8),
}

impl Args {
    #[inline(always)]
    pub(super) fn record(ctx: &TracePointContext) -> Self {
        Self::Record(ctx.as_ptr().cast::<u8>())
    }

    #[inline(always)]
    pub(super) fn regs(ctx: &FEntryContext) -> Self {
        Self::Regs(ctx.arg::<*const u8>(0))
    }

    /// Syscall argument `i` (0..6).
    #[inline(always)]
    pub(super) fn arg(self, i: usize) -> Result<u64, i64> {
        match self {
            Self::Record(p) => {
                let base = tp_sys_offsets().0;
                if base == OFFSET_ABSENT || i >= 6 {
                    return Err(-1);
                }
                read_field::<u64>(p, base + 8 * i as u32)
            }
            Self::Regs(p) => read_field::<u64>(p, sys_arg_offset(i)),
        }
    }
}

/// The return value in a `sys_exit_*` tracepoint record; `None` when the
/// record cannot be read (then nothing may be judged by it: a 0 would
/// name descriptor 0).
#[inline(always)]
pub(super) fn exit_ret(ctx: &TracePointContext) -> Option<i64> {
    // SAFETY: the offset comes from the tracepoint's format file.
    unsafe { ctx.read_at::<i64>(tp_sys_offsets().1 as usize) }.ok()
}

mod address_space;
pub(crate) mod event;
pub(crate) mod fallback;
mod io_uring;
mod listen;
mod memory;
pub(crate) mod perf_bpf;
pub(crate) mod procfs;
mod ptrace;
mod signal;

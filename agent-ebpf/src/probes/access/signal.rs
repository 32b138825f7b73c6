//! Signals runtimes take as debug triggers: SIGQUIT wakes a JVM's attach
//! listener (jcmd, jattach, async-profiler) and dumps its threads, SIGUSR1
//! turns Node's inspector on, SIGUSR2 is another common hook. Seen when a
//! process generates one for another (`signal_generate`), with the target
//! resolved in the kernel; the agent records those sent to a runtime. The
//! kernel's own signals are not debugging and are left out.

use agent_common::{AccessKind, EventKind, access_flags};
use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

use super::event::{aggregate, new_event};
use crate::{
    ring::count_lost,
    task::{current_pid_tgid, is_agent, offsets, read_field, read_or_zero},
};

const SIGQUIT: i32 = 3;
const SIGUSR1: i32 = 10;
const SIGUSR2: i32 = 12;

/// `SEND_SIG_PRIV`: a signal the kernel sends on its own account.
const SEND_SIG_PRIV: usize = 1;

/// `kernel_siginfo.si_code` (after `si_signo` and `si_errno`).
const SI_CODE_AT: u32 = 8;

/// `signal_generate(sig, info, task, type, result)`.
#[btf_tracepoint(function = "signal_generate")]
pub(crate) fn signal_signal_generate(ctx: BtfTracePointContext) -> u32 {
    let sig: i32 = ctx.arg(0);
    if sig != SIGQUIT && sig != SIGUSR1 && sig != SIGUSR2 {
        return 0;
    }
    let info: *const u8 = ctx.arg(1);
    // From userspace only: kill, tkill, sigqueue (si_code <= 0).
    if (info as usize) <= SEND_SIG_PRIV
        || read_field::<i32>(info, SI_CODE_AT).is_ok_and(|code| code > 0)
    {
        return 0;
    }
    let task: *const u8 = ctx.arg(2);
    let (pid, tgid) = current_pid_tgid();
    let target = read_or_zero::<u32>(task, offsets().task_tgid);
    if is_agent(tgid) || target == tgid || target == 0 {
        return 0;
    }
    let Some(ev) = new_event(pid, tgid, AccessKind::Signal, target) else {
        count_lost(EventKind::Access);
        return 0;
    };
    ev.request = sig as u64;
    ev.target_host_pid = target;
    ev.flags2 |= access_flags::TARGET_RESOLVED;
    aggregate(ev);
    0
}

//! A TCP socket starting to listen, seen from the socket's state change
//! (`inet_sock_set_state` to TCP_LISTEN), not from a syscall hook: whatever
//! way the socket got there. The listening process is the actor; the agent
//! keeps the listens that open a debug interface (a JVM with JDWP, Node's
//! inspector, delve, debugpy, gdbserver, pprof, JMX) and counts the rest.

use agent_common::{AccessKind, EventKind, OFFSET_ABSENT};
use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

use super::event::{emit, new_event};
use crate::{
    ring::count_lost,
    task::{current_pid_tgid, is_agent, offsets, read_or_zero},
};

const TCP_LISTEN: i32 = 10;
const AF_INET: u16 = 2;

/// `inet_sock_set_state(sk, oldstate, newstate)`.
#[btf_tracepoint(function = "inet_sock_set_state")]
pub(crate) fn listen_inet_sock_set_state(ctx: BtfTracePointContext) -> u32 {
    let newstate: i32 = ctx.arg(2);
    if newstate != TCP_LISTEN {
        return 0;
    }
    let (pid, tgid) = current_pid_tgid();
    if is_agent(tgid) {
        return 0;
    }
    let off = offsets();
    if off.sk_num == OFFSET_ABSENT {
        return 0;
    }
    let sk: *const u8 = ctx.arg(0);
    let Some(ev) = new_event(pid, tgid, AccessKind::Listen, 0) else {
        count_lost(EventKind::Access);
        return 0;
    };
    let family = read_or_zero::<u16>(sk, off.sk_family);
    ev.request = u64::from(read_or_zero::<u16>(sk, off.sk_num));
    ev.arg = u64::from(family);
    ev.name = if family == AF_INET {
        let v4 = read_or_zero::<[u8; 4]>(sk, off.sk_rcv_saddr);
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&v4);
        a
    } else {
        read_or_zero::<[u8; 16]>(sk, off.sk_v6_rcv_saddr)
    };
    emit(ev);
    0
}

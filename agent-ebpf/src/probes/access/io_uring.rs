//! io_uring opens: an IORING_OP_OPENAT/OPENAT2 completion that gave a
//! descriptor is judged like an open syscall at its exit.

use agent_common::{OFFSET_ABSENT, access_flags};
use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

use super::procfs::{opened_proc_file, report_opened};
use crate::task::{current_pid_tgid, is_agent, offsets, read_field, uring_offsets};

const IORING_OP_OPENAT: u8 = 18;

const IORING_OP_OPENAT2: u8 = 28;

/// Every io_uring completion: an IORING_OP_OPENAT/OPENAT2 request that
/// gave a descriptor is judged like an open syscall at its exit. The
/// completion runs in a thread of the submitting process (the submitter,
/// its SQPOLL thread or an io-wq worker), which shares its descriptor
/// table. Opens into a fixed file slot give no descriptor and are not
/// seen. The second argument is the request (null for a completion that
/// has none).
#[btf_tracepoint(function = "io_uring_complete")]
pub(crate) fn uring_io_uring_complete(ctx: BtfTracePointContext) -> u32 {
    uring_open_complete(ctx.arg(1));
    0
}

#[inline(always)]
fn uring_open_complete(req: *const u8) {
    let (opcode_at, res_at) = uring_offsets();
    if opcode_at == OFFSET_ABSENT || res_at == OFFSET_ABSENT || req.is_null() {
        return;
    }
    // Every other completion on the host ends here.
    match read_field::<u8>(req, opcode_at) {
        Ok(IORING_OP_OPENAT | IORING_OP_OPENAT2) => {}
        _ => return,
    }
    let Ok(res) = read_field::<i32>(req, res_at) else {
        return;
    };
    if res < 0 {
        return;
    }
    let off = offsets();
    if off.io_kiocb_cmd != OFFSET_ABSENT && off.io_open_file_slot != OFFSET_ABSENT {
        let slot = read_field::<u32>(req, off.io_kiocb_cmd + off.io_open_file_slot);
        if slot != Ok(0) {
            // A fixed slot (or unreadable): `res` is no descriptor.
            return;
        }
    }
    let (pid, tgid) = current_pid_tgid();
    if is_agent(tgid) {
        return;
    }
    if let Some(file) = opened_proc_file(off, res as u32) {
        report_opened(pid, tgid, file, i64::from(res), access_flags::IO_URING);
    }
}

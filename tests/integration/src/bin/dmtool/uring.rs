//! Reads another process's memory through io_uring, in the shapes a
//! syscall hook never sees: the open of /proc/PID/mem and the read of it
//! are io_uring requests, in a descriptor or a fixed file slot, with or
//! without a completion for the open, on an ordinary, task-deferred,
//! polled or overflowing ring. Exit 0 when 8 bytes were read, 2 when a
//! step was refused (its errno printed).

use std::{ffi::CString, process::exit};

use io_uring::{IoUring, opcode, squeue, types};

use super::{first_writable, refused};

/// How the open and the read are put to the kernel.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Open into a descriptor, then a read request on it.
    Plain,
    /// Open into fixed slot 0, then a read of the slot.
    Fixed,
    /// Open into a slot the kernel picks (IORING_FILE_INDEX_ALLOC).
    Alloc,
    /// Fixed slot, the open's completion skipped on success
    /// (IOSQE_CQE_SKIP_SUCCESS) and linked to the read.
    Skip,
    /// A ring whose completions run only when the submitter waits
    /// (IORING_SETUP_DEFER_TASKRUN), descriptor.
    Defer,
    /// A kernel thread polls the ring (IORING_SETUP_SQPOLL), descriptor.
    Sqpoll,
    /// The completion queue is full when the open completes: its
    /// completion waits on the overflow list.
    Overflow,
}

impl Shape {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "plain" => Self::Plain,
            "fixed" => Self::Fixed,
            "alloc" => Self::Alloc,
            "skip" => Self::Skip,
            "defer" => Self::Defer,
            "sqpoll" => Self::Sqpoll,
            "overflow" => Self::Overflow,
            _ => return None,
        })
    }
}

pub(crate) const SHAPES: &str = "plain|fixed|alloc|skip|defer|sqpoll|overflow";

fn ring(shape: Shape) -> IoUring {
    let mut b = IoUring::builder();
    match shape {
        Shape::Defer => {
            b.setup_single_issuer().setup_defer_taskrun();
        }
        Shape::Sqpoll => {
            b.setup_sqpoll(1000);
        }
        Shape::Overflow => {
            b.setup_cqsize(2);
        }
        _ => {}
    }
    match b.build(2) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dmtool: io_uring setup: {e}");
            exit(3)
        }
    }
}

fn push(ring: &mut IoUring, e: &squeue::Entry) {
    // SAFETY: every buffer and path an entry points at lives in `read`'s
    // frame until its completions were reaped or the process exits.
    if unsafe { ring.submission().push(e) }.is_err() {
        eprintln!("dmtool: submission queue full");
        exit(1);
    }
}

fn submit(ring: &IoUring, want: usize) {
    if let Err(e) = ring.submit_and_wait(want) {
        eprintln!("dmtool: io_uring_enter: {e}");
        exit(1);
    }
}

/// The completions so far, as (user_data, result).
fn reap(ring: &mut IoUring) -> Vec<(u64, i32)> {
    ring.completion()
        .map(|c| (c.user_data(), c.result()))
        .collect()
}

fn check(what: &str, res: i32) -> i32 {
    if res < 0 {
        eprintln!(
            "dmtool: io_uring {what}: {}",
            std::io::Error::from_raw_os_error(-res)
        );
        exit(2);
    }
    res
}

const OPEN: u64 = 1;
const READ: u64 = 2;

pub(crate) fn read(pid: i32, shape: &str) -> ! {
    let Some(shape) = Shape::parse(shape) else {
        eprintln!("dmtool: uring PID {SHAPES}");
        exit(64)
    };
    let path = CString::new(format!("/proc/{pid}/mem")).unwrap();
    let addr = first_writable(pid) as u64;
    let mut buf = [0u8; 8];
    let mut ring = ring(shape);
    let fixed = matches!(shape, Shape::Fixed | Shape::Alloc | Shape::Skip);
    if fixed && ring.submitter().register_files_sparse(4).is_err() {
        refused("IORING_REGISTER_FILES2");
    }
    let slot = match shape {
        Shape::Alloc => Some(types::DestinationSlot::auto_target()),
        _ if fixed => Some(types::DestinationSlot::try_from_slot_target(0).unwrap()),
        _ => None,
    };
    let open = opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), path.as_ptr())
        // A fixed slot is no descriptor: the kernel refuses O_CLOEXEC there.
        .flags(if fixed {
            libc::O_RDONLY
        } else {
            libc::O_RDONLY | libc::O_CLOEXEC
        })
        .file_index(slot)
        .build()
        .user_data(OPEN);
    if shape == Shape::Overflow {
        // Two no-ops fill the two-entry completion queue, unreaped.
        for _ in 0..2 {
            push(&mut ring, &opcode::Nop::new().build().user_data(0));
        }
        submit(&ring, 2);
    }
    if shape == Shape::Skip {
        let read = opcode::Read::new(types::Fixed(0), buf.as_mut_ptr(), 8)
            .offset(addr)
            .build()
            .user_data(READ);
        push(
            &mut ring,
            &open.flags(squeue::Flags::IO_LINK | squeue::Flags::SKIP_SUCCESS),
        );
        push(&mut ring, &read);
        submit(&ring, 1);
        finish(&reap(&mut ring), &buf)
    }
    push(&mut ring, &open);
    submit(&ring, 1);
    // An overflowed completion is handed over by a later wait.
    let mut done = reap(&mut ring);
    for _ in 0..3 {
        if done.iter().any(|(u, _)| *u == OPEN) {
            break;
        }
        submit(&ring, 1);
        done.extend(reap(&mut ring));
    }
    let Some(&(_, res)) = done.iter().find(|(u, _)| *u == OPEN) else {
        eprintln!("dmtool: no completion for the open: {done:?}");
        exit(1)
    };
    let res = check("open", res);
    let read = match (shape, fixed) {
        (Shape::Alloc, _) => opcode::Read::new(types::Fixed(res as u32), buf.as_mut_ptr(), 8),
        (_, true) => opcode::Read::new(types::Fixed(0), buf.as_mut_ptr(), 8),
        (_, false) => opcode::Read::new(types::Fd(res), buf.as_mut_ptr(), 8),
    };
    push(&mut ring, &read.offset(addr).build().user_data(READ));
    submit(&ring, 1);
    finish(&reap(&mut ring), &buf)
}

fn finish(done: &[(u64, i32)], buf: &[u8; 8]) -> ! {
    for &(u, res) in done {
        match u {
            OPEN => {
                check("open", res);
            }
            READ if check("read", res) == 8 => {
                println!("read {buf:02x?}");
                exit(0)
            }
            _ => {}
        }
    }
    eprintln!("dmtool: no completed read: {done:?}");
    exit(1)
}

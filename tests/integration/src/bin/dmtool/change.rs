//! The ways a debugger changes a target, each done raw, for the read-only
//! tests: a ptrace POKEDATA and a write through /proc/PID/mem, beside the
//! read through the same file that read-only access must keep allowing.

use std::{os::unix::fs::FileExt as _, process::exit};

use crate::{errno, refused, wait};

const PTRACE_POKEDATA: libc::c_uint = 5;
const PTRACE_ATTACH: libc::c_uint = 16;
const PTRACE_DETACH: libc::c_uint = 17;

/// Attaches and writes `TOUCHED!` at `addr` with PTRACE_POKEDATA.
pub(crate) fn poke(pid: i32, addr: usize) -> ! {
    // SAFETY: raw ptrace with integer arguments; no memory is passed.
    if unsafe { libc::ptrace(PTRACE_ATTACH, pid, 0usize, 0usize) } != 0 {
        refused("PTRACE_ATTACH");
    }
    wait(pid);
    let word = usize::from_ne_bytes(*b"TOUCHED!");
    // SAFETY: as above; POKEDATA's data is the word itself.
    if unsafe { libc::ptrace(PTRACE_POKEDATA, pid, addr, word) } != 0 {
        refused("PTRACE_POKEDATA");
    }
    // SAFETY: as above.
    unsafe { libc::ptrace(PTRACE_DETACH, pid, 0usize, 0usize) };
    exit(0)
}

/// Opens /proc/PID/mem (read-write for `write`) and reads, or writes
/// `TOUCHED!`, 8 bytes at `addr`.
pub(crate) fn mem(pid: i32, addr: usize, write: bool) -> ! {
    let path = format!("/proc/{pid}/mem");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .open(&path)
        .unwrap_or_else(|e| {
            eprintln!("dmtool: open {path}: {e}");
            exit(2)
        });
    let done = if write {
        file.write_at(b"TOUCHED!", addr as u64)
    } else {
        file.read_at(&mut [0u8; 8], addr as u64)
    };
    match done {
        Ok(8) => exit(0),
        Ok(n) => {
            eprintln!("dmtool: {path}: {n} of 8 bytes");
            exit(1)
        }
        Err(e) => {
            eprintln!("dmtool: {path}: {e} ({})", errno());
            exit(2)
        }
    }
}

//! The fork race: a protected process forks children as fast as it can
//! (postgres forks one per connection) and an attacker seizes each next
//! pid in a tight loop, hoping to take a child before its protection is
//! in place. Both run in a pid namespace of their own, so every pid the
//! attacker can take is the forker's or a child of it, and nothing else on
//! the host is touched.
//!
//! `race FORKER SECS` exits 0 when the attacker held an attach and lived
//! (the evasion worked; it prints the pid), 10 when the attacker was
//! killed, 1 when no attach went through in SECS (each refused). It
//! prints the attempts and refusals on stderr.

use std::{
    process::exit,
    time::{Duration, Instant},
};

use super::{errno, exec, refused, wait};

const PTRACE_SEIZE: libc::c_uint = 0x4206;

/// `forker`: forks a child every millisecond, forever; each child lives
/// 200 ms. Children are reaped by the kernel (SIGCHLD ignored).
pub(crate) fn forker() -> ! {
    // SAFETY: setting a signal disposition; no handler runs.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    loop {
        // SAFETY: the child only sleeps and leaves with _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            std::thread::sleep(Duration::from_millis(200));
            // SAFETY: leaving the forked child.
            unsafe { libc::_exit(0) };
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn last_pid() -> i32 {
    std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// The attacker, as init of the new namespace.
fn attack(forker_exe: &str, secs: u64) -> i32 {
    // SAFETY: the child execs at once.
    let forker = unsafe { libc::fork() };
    if forker == 0 {
        exec(forker_exe, &["forker".to_owned()]);
    }
    std::thread::sleep(Duration::from_millis(100));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (mut attempts, mut refusals) = (0u64, 0u64);
    let mut won = None;
    'race: while Instant::now() < deadline {
        let next = last_pid() + 1;
        for guess in next..next + 3 {
            attempts += 1;
            // SAFETY: raw ptrace with integer arguments.
            let r = unsafe { libc::ptrace(PTRACE_SEIZE, guess, 0, 0) };
            if r == 0 {
                won = Some(guess);
                break 'race;
            }
            if errno().raw_os_error() == Some(libc::EPERM) {
                refusals += 1;
            }
        }
    }
    eprintln!("dmtool: race: {attempts} attempts, {refusals} refused");
    // SAFETY: ending the forker this process made (its children go with
    // the namespace when this init exits).
    unsafe { libc::kill(forker, libc::SIGKILL) };
    match won {
        Some(pid) => {
            println!("seized {pid}");
            0
        }
        None => 1,
    }
}

pub(crate) fn race(forker_exe: &str, secs: u64) -> ! {
    // SAFETY: unshare of the pid namespace: our next child is its init.
    if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
        refused("unshare(CLONE_NEWPID)");
    }
    // SAFETY: the child runs `attack` and leaves with _exit.
    let init = unsafe { libc::fork() };
    if init == 0 {
        let code = attack(forker_exe, secs);
        // SAFETY: leaving the namespace's init.
        unsafe { libc::_exit(code) };
    }
    let status = wait(init);
    if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL {
        println!("killed");
        exit(10)
    }
    exit(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        1
    })
}

//! The privileged tests' attacker and target, as one small static-ish
//! binary that runs on the host and in the VM alike (the VM has no Python):
//! each subcommand does one thing the raw way and says by its exit code
//! what happened.
//!
//! Exit codes: 0 the operation went through; 2 the kernel refused it (the
//! errno is printed); 10 the traced child was killed; 11 the traced
//! child's exec was refused; 12 a protected program ran under a tracer
//! (the evasion worked); 3 io_uring is not available; 64 usage.

mod change;
mod race;
mod uring;

use std::{ffi::CString, io::Write as _, process::exit, time::Duration};

const PTRACE_TRACEME: libc::c_uint = 0;
const PTRACE_PEEKDATA: libc::c_uint = 2;
const PTRACE_CONT: libc::c_uint = 7;
const PTRACE_DETACH: libc::c_uint = 17;
const PTRACE_ATTACH: libc::c_uint = 16;
const PTRACE_SETOPTIONS: libc::c_uint = 0x4200;
const PTRACE_GETEVENTMSG: libc::c_uint = 0x4201;
const PTRACE_O_TRACEFORK: libc::c_long = 0x02;
const PTRACE_O_TRACEEXEC: libc::c_long = 0x10;
const PTRACE_EVENT_FORK: i32 = 1;
const PTRACE_EVENT_EXEC: i32 = 4;

pub(crate) fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn ptrace(req: libc::c_uint, pid: i32, addr: usize, data: usize) -> libc::c_long {
    // SAFETY: raw ptrace with integer arguments; no memory is passed.
    unsafe {
        libc::ptrace(
            req,
            pid,
            addr as *mut libc::c_void,
            data as *mut libc::c_void,
        )
    }
}

pub(crate) fn refused(what: &str) -> ! {
    eprintln!("dmtool: {what}: {}", errno());
    exit(2)
}

pub(crate) fn wait(pid: i32) -> i32 {
    let mut status = 0;
    // SAFETY: waitpid with a pointer to a local.
    let r = unsafe { libc::waitpid(pid, &raw mut status, libc::__WALL) };
    if r < 0 {
        eprintln!("dmtool: waitpid {pid}: {}", errno());
        exit(1);
    }
    status
}

fn attach(pid: i32, peek: bool) -> ! {
    if ptrace(PTRACE_ATTACH, pid, 0, 0) != 0 {
        refused("PTRACE_ATTACH");
    }
    attached(pid, peek)
}

/// Tries PTRACE_ATTACH up to `tries` times, as a tool retrying in a loop.
fn attach_retrying(pid: i32, tries: i32) -> ! {
    for _ in 1..tries {
        if ptrace(PTRACE_ATTACH, pid, 0, 0) == 0 {
            attached(pid, false)
        }
    }
    attach(pid, false)
}

fn attached(pid: i32, peek: bool) -> ! {
    wait(pid);
    if peek {
        // SAFETY: clearing errno before a call whose -1 is a valid result.
        unsafe { *libc::__errno_location() = 0 };
        let word = ptrace(PTRACE_PEEKDATA, pid, first_writable(pid), 0);
        if word == -1 && errno().raw_os_error() != Some(0) {
            refused("PTRACE_PEEKDATA");
        }
    }
    ptrace(PTRACE_DETACH, pid, 0, 0);
    exit(0)
}

pub(crate) fn first_writable(pid: i32) -> usize {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    maps.lines()
        .find(|l| l.split_whitespace().nth(1).is_some_and(|p| p.contains('w')))
        .and_then(|l| l.split('-').next())
        .and_then(|a| usize::from_str_radix(a, 16).ok())
        .unwrap_or(0)
}

fn vm_read(pid: i32) -> ! {
    let mut buf = [0u8; 8];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: 8,
    };
    let remote = libc::iovec {
        iov_base: first_writable(pid) as *mut libc::c_void,
        iov_len: 8,
    };
    // SAFETY: one local iovec over a local buffer of its length.
    let n = unsafe { libc::process_vm_readv(pid, &raw const local, 1, &raw const remote, 1, 0) };
    if n != 8 {
        refused("process_vm_readv");
    }
    exit(0)
}

/// process_vm_writev of 8 bytes to `addr` in process `pid`.
fn vm_write(pid: i32, addr: usize) -> ! {
    let mut buf = *b"TOUCHED!";
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: 8,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: 8,
    };
    // SAFETY: one local iovec over a local buffer of its length.
    let n = unsafe { libc::process_vm_writev(pid, &raw const local, 1, &raw const remote, 1, 0) };
    if n != 8 {
        refused("process_vm_writev");
    }
    exit(0)
}

/// A word another process might write: prints its address, then exits 13
/// as soon as it changed (the write landed).
fn sentinel() -> ! {
    // On the heap: writable memory, as a process's data is.
    let word: &'static mut [u8; 8] = Box::leak(Box::new(*b"UNTOUCHD"));
    let at = std::ptr::from_mut(word);
    println!("{:x}", at as usize);
    let _ = std::io::stdout().flush();
    loop {
        // SAFETY: a leaked allocation, read as another process may have
        // written it behind the compiler's back.
        let now = unsafe { std::ptr::read_volatile(at) };
        if now != *b"UNTOUCHD" {
            println!("changed");
            exit(13);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn pidfd_getfd(pid: i32) -> ! {
    // SAFETY: raw syscalls with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        refused("pidfd_open");
    }
    // SAFETY: as above.
    let got = unsafe { libc::syscall(libc::SYS_pidfd_getfd, fd, 0, 0) };
    if got < 0 {
        refused("pidfd_getfd");
    }
    exit(0)
}

pub(crate) fn exec(path: &str, args: &[String]) -> ! {
    let c: Vec<CString> = std::iter::once(path.to_owned())
        .chain(args.iter().cloned())
        .map(|a| CString::new(a).expect("no NUL in arguments"))
        .collect();
    let mut argv: Vec<*const libc::c_char> = c.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    // SAFETY: a NULL-terminated argv of C strings that outlive the call.
    unsafe { libc::execv(c[0].as_ptr(), argv.as_ptr()) };
    eprintln!("dmtool: exec {path}: {}", errno());
    // SAFETY: leaving a forked child without running its parent's destructors.
    unsafe { libc::_exit(126) }
}

/// What became of a traced child (`pid`) that exec'd a protected program.
fn outcome(pid: i32, status: i32) -> ! {
    if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL {
        println!("killed");
        exit(10)
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 126 {
        println!("exec refused");
        exit(11)
    }
    if libc::WIFSTOPPED(status) {
        // The exec went through and the child stopped for its tracer: the
        // tracer holds a protected process. Show it by reading it.
        // SAFETY: clearing errno before a call whose -1 is a valid result.
        unsafe { *libc::__errno_location() = 0 };
        let w = ptrace(PTRACE_PEEKDATA, pid, first_writable(pid), 0);
        println!("traced: read {w:#x} ({})", errno());
        // SAFETY: ending the child this process made.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        exit(12)
    }
    println!("other: status {status:#x}");
    exit(1)
}

/// A child asks to be traced by this process, then execs `path`.
fn trace_exec(path: &str, args: &[String]) -> ! {
    // SAFETY: fork; the child only calls async-signal-safe functions.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        exec(path, args);
    }
    let status = wait(pid);
    outcome(pid, status)
}

/// This process traces a child with PTRACE_O_TRACEFORK; the child forks a
/// grandchild that execs `path`, auto-attached by the kernel, never
/// checked by an attach.
fn trace_fork_exec(path: &str, args: &[String]) -> ! {
    // SAFETY: as in `trace_exec`.
    let child = unsafe { libc::fork() };
    if child == 0 {
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        // SAFETY: stopping ourselves for the tracer to set its options.
        unsafe { libc::raise(libc::SIGSTOP) };
        // SAFETY: as above.
        let g = unsafe { libc::fork() };
        if g == 0 {
            exec(path, args);
        }
        let mut st = 0;
        // SAFETY: waitpid with a pointer to a local.
        unsafe { libc::waitpid(g, &raw mut st, 0) };
        // SAFETY: as above.
        unsafe { libc::_exit(0) }
    }
    wait(child);
    ptrace(
        PTRACE_SETOPTIONS,
        child,
        0,
        (PTRACE_O_TRACEFORK | PTRACE_O_TRACEEXEC) as usize,
    );
    ptrace(PTRACE_CONT, child, 0, 0);
    let mut grandchild = 0;
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a pointer to a local.
        let who = unsafe { libc::waitpid(-1, &raw mut status, libc::__WALL) };
        if who < 0 {
            println!("no grandchild outcome");
            exit(1);
        }
        if who == child {
            if libc::WIFSTOPPED(status) && status >> 16 == PTRACE_EVENT_FORK {
                let mut msg: libc::c_ulong = 0;
                ptrace(PTRACE_GETEVENTMSG, child, 0, (&raw mut msg) as usize);
                grandchild = msg as i32;
            }
            if libc::WIFSTOPPED(status) {
                ptrace(PTRACE_CONT, child, 0, 0);
            }
            continue;
        }
        if who == grandchild || grandchild == 0 {
            let exec_stop = libc::WIFSTOPPED(status) && status >> 16 == PTRACE_EVENT_EXEC;
            if exec_stop {
                outcome(who, status);
            }
            if libc::WIFSTOPPED(status) {
                // The auto-attach's first stop: let it run to its exec.
                ptrace(PTRACE_CONT, who, 0, 0);
                continue;
            }
            outcome(who, status);
        }
    }
}

/// In a new pid namespace: start `path` (pid 2 there) and attach to it by
/// the pid the namespace gives it.
fn ns_attach(path: &str, args: &[String]) -> ! {
    // SAFETY: unshare of the pid namespace: our next child is its init.
    if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
        refused("unshare(CLONE_NEWPID)");
    }
    // SAFETY: as in `trace_exec`.
    let init = unsafe { libc::fork() };
    if init == 0 {
        // SAFETY: as above.
        let target = unsafe { libc::fork() };
        if target == 0 {
            exec(path, args);
        }
        std::thread::sleep(Duration::from_millis(300));
        let code = if ptrace(PTRACE_ATTACH, target, 0, 0) == 0 {
            println!("attached to {target} in the namespace");
            0
        } else {
            eprintln!("dmtool: PTRACE_ATTACH {target}: {}", errno());
            2
        };
        // SAFETY: ending the target this process made.
        unsafe { libc::kill(target, libc::SIGKILL) };
        // SAFETY: as above.
        unsafe { libc::_exit(code) }
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

/// Starts `path` as pid `pid` (which must be free), then leaves it running.
fn spawn_pid(pid: i32, path: &str, args: &[String]) -> ! {
    // struct clone_args (UAPI), up to set_tid_size.
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
    }
    let tid = [pid];
    let a = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        set_tid: tid.as_ptr() as u64,
        set_tid_size: 1,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without a new stack behaves like fork; the child only
    // execs.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &raw const a,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if r < 0 {
        refused("clone3 with set_tid");
    }
    if r == 0 {
        // The child outlives this tool: it must not hold the caller's
        // output pipes open, or the caller waits for it to end.
        // SAFETY: plain fd calls on a path constant.
        unsafe {
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            libc::dup2(null, 1);
            libc::dup2(null, 2);
        }
        exec(path, args);
    }
    println!("{r}");
    exit(0)
}

/// perf_event_open of a software clock counter on process `pid`.
fn perf(pid: i32) -> ! {
    // struct perf_event_attr: type at 0, size at 4, config at 8; the rest 0.
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&1u32.to_ne_bytes()); // PERF_TYPE_SOFTWARE
    attr[4..8].copy_from_slice(&128u32.to_ne_bytes());
    // SAFETY: a zeroed attr of the size it declares.
    let fd = unsafe { libc::syscall(libc::SYS_perf_event_open, attr.as_ptr(), pid, -1, -1, 0) };
    if fd < 0 {
        refused("perf_event_open");
    }
    exit(0)
}

/// bpf(BPF_MAP_GET_FD_BY_ID, id).
fn bpf_map(id: i32) -> ! {
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(id as u32).to_ne_bytes());
    // SAFETY: a zeroed attr with the id first, of the size passed.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, 14, attr.as_ptr(), 128) };
    if fd < 0 {
        refused("BPF_MAP_GET_FD_BY_ID");
    }
    exit(0)
}

/// Runs the rest of the command line as user and group `id`, without
/// supplementary groups.
fn as_user(id: u32, rest: &[String]) -> ! {
    // SAFETY: plain credential syscalls before exec.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0
            || libc::setresgid(id, id, id) != 0
            || libc::setresuid(id, id, id) != 0
        {
            refused("dropping to the user");
        }
    }
    let Some((path, args)) = rest.split_first() else {
        exit(64)
    };
    exec(path, args)
}

fn threads(n: usize) -> ! {
    let (tx, rx) = std::sync::mpsc::channel();
    for _ in 0..n {
        let tx = tx.clone();
        std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tx.send(unsafe { libc::gettid() })
                .expect("main thread waits");
            std::thread::sleep(Duration::from_secs(600));
        });
    }
    let tids: Vec<String> = (0..n)
        .map(|_| rx.recv().expect("thread started").to_string())
        .collect();
    println!("ready {}", tids.join(" "));
    let _ = std::io::stdout().flush();
    std::thread::sleep(Duration::from_secs(600));
    exit(0)
}

fn arg(args: &[String], i: usize) -> i32 {
    args.get(i).and_then(|a| a.parse().ok()).unwrap_or_else(|| {
        eprintln!("dmtool: argument {i}: a number");
        exit(64)
    })
}

/// An address in hex, as `sentinel` prints it; 0 when absent.
fn hex(args: &[String], i: usize) -> usize {
    usize::from_str_radix(args.get(i).map_or("", String::as_str), 16).unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = |i: usize| args.get(i..).unwrap_or(&[]).to_vec();
    match args.first().map(String::as_str) {
        Some("threads") => threads(arg(&args, 1) as usize),
        Some("attach") => attach(arg(&args, 1), false),
        Some("attach-retrying") => attach_retrying(arg(&args, 1), arg(&args, 2)),
        Some("peek") => attach(arg(&args, 1), true),
        Some("vm-read") => vm_read(arg(&args, 1)),
        Some("vm-write") => vm_write(arg(&args, 1), hex(&args, 2)),
        Some("sentinel") => sentinel(),
        Some("poke") => change::poke(arg(&args, 1), hex(&args, 2)),
        Some("mem-read") => change::mem(arg(&args, 1), hex(&args, 2), false),
        Some("mem-write") => change::mem(arg(&args, 1), hex(&args, 2), true),
        Some("pidfd") => pidfd_getfd(arg(&args, 1)),
        Some("trace-exec") => trace_exec(&args[1], &rest(2)),
        Some("trace-fork-exec") => trace_fork_exec(&args[1], &rest(2)),
        Some("ns-attach") => ns_attach(&args[1], &rest(2)),
        Some("spawn-pid") => spawn_pid(arg(&args, 1), &args[2], &rest(3)),
        Some("perf") => perf(arg(&args, 1)),
        Some("forker") => race::forker(),
        Some("race") => race::race(&args[1], arg(&args, 2) as u64),
        Some("uring") => uring::read(arg(&args, 1), args.get(2).map_or("", String::as_str)),
        Some("bpf-map") => bpf_map(arg(&args, 1)),
        Some("as") => as_user(arg(&args, 1) as u32, &rest(2)),
        Some("traceme") => {
            if ptrace(PTRACE_TRACEME, 0, 0, 0) != 0 {
                refused("PTRACE_TRACEME");
            }
            exit(0)
        }
        _ => {
            eprintln!(
                "usage: dmtool threads N | sentinel | forker | race FORKER SECS | vm-write PID HEXADDR | poke PID HEXADDR | mem-read PID HEXADDR | mem-write PID HEXADDR | attach PID | attach-retrying PID TRIES | peek PID | vm-read PID | pidfd PID | \
                 trace-exec PATH ARGS | trace-fork-exec PATH ARGS | ns-attach PATH ARGS | \
                 spawn-pid PID PATH ARGS | perf PID | uring PID {} | bpf-map ID | as UID CMD ARGS | \
                 traceme",
                uring::SHAPES
            );
            exit(64)
        }
    }
}

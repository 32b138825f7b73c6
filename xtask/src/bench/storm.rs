//! The load generators: an exec storm (`posix_spawn` of `/bin/true` with a
//! nonce in argv, optionally paced), a fork storm (fork + `_exit`, the
//! cheapest way to make kernel events), and a ptrace-heavy workload
//! (`strace -f` of a syscall loop). Each worker stamps every spawn with
//! CLOCK_BOOTTIME, the clock of the records' `monotonic_ns`, so the bench
//! can match a record to the moment its exec was asked for.

use std::{
    ffi::CString,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

/// CLOCK_BOOTTIME in nanoseconds (what the kernel stamps events with).
pub(crate) fn boottime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &raw mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// What one storm did.
pub(crate) struct StormResult {
    pub wall: Duration,
    pub spawned: u64,
    /// Nonce prefix in argv[1]: `<prefix><worker>-<index>`.
    pub prefix: String,
    /// Per worker, the boottime at which each spawn was asked for.
    pub spawn_ns: Vec<Vec<u64>>,
}

impl StormResult {
    pub(crate) fn per_sec(&self) -> f64 {
        self.spawned as f64 / self.wall.as_secs_f64()
    }

    /// Spawn time of the exec whose argv[1] is `nonce`, if it is ours.
    pub(crate) fn spawn_time(&self, nonce: &str) -> Option<u64> {
        let rest = nonce.strip_prefix(&self.prefix)?;
        let (w, i) = rest.split_once('-')?;
        let w: usize = w.parse().ok()?;
        let i: usize = i.parse().ok()?;
        self.spawn_ns.get(w)?.get(i).copied()
    }
}

/// Spawns `/bin/true NONCE` `total` times on `workers` threads, each waiting
/// for its child before the next; `rate` (execs/s over all workers) paces
/// the workers on an absolute schedule, `None` runs flat out.
pub(crate) fn exec_storm(
    total: u64,
    workers: usize,
    rate: Option<f64>,
    tag: &str,
) -> Result<StormResult> {
    let prefix = format!("dmb{tag}{}x", std::process::id());
    let per = total / workers as u64;
    let start = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let prefix = prefix.clone();
            let interval = rate.map(|r| Duration::from_secs_f64(workers as f64 / r));
            std::thread::spawn(move || exec_worker(w, per, interval, &prefix))
        })
        .collect();
    let mut spawn_ns = Vec::new();
    let mut failed = 0;
    for h in handles {
        let (times, f) = h
            .join()
            .map_err(|_| anyhow::anyhow!("exec storm worker panicked"))??;
        spawn_ns.push(times);
        failed += f;
    }
    let wall = start.elapsed();
    let spawned = spawn_ns.iter().map(|v| v.len() as u64).sum::<u64>() - failed;
    Ok(StormResult {
        wall,
        spawned,
        prefix,
        spawn_ns,
    })
}

fn exec_worker(
    w: usize,
    n: u64,
    interval: Option<Duration>,
    prefix: &str,
) -> Result<(Vec<u64>, u64)> {
    let path = CString::new("/bin/true").context("path")?;
    let env: [*mut libc::c_char; 1] = [std::ptr::null_mut()];
    let mut times = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    let mut failed = 0;
    let t0 = Instant::now();
    for i in 0..n {
        if let Some(iv) = interval {
            let due = t0 + iv * u32::try_from(i).unwrap_or(u32::MAX);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let nonce = CString::new(format!("{prefix}{w}-{i}")).context("nonce")?;
        let argv = [
            path.as_ptr().cast_mut(),
            nonce.as_ptr().cast_mut(),
            std::ptr::null_mut(),
        ];
        let mut pid: libc::pid_t = 0;
        times.push(boottime_ns());
        // SAFETY: path, argv and env are NUL-terminated and outlive the call;
        // null file actions and attributes mean "inherit everything".
        let rc = unsafe {
            libc::posix_spawn(
                &raw mut pid,
                path.as_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                argv.as_ptr(),
                env.as_ptr(),
            )
        };
        if rc != 0 {
            failed += 1;
            continue;
        }
        let mut status = 0;
        // SAFETY: pid is our child; status is writable.
        unsafe { libc::waitpid(pid, &raw mut status, 0) };
    }
    Ok((times, failed))
}

/// Forks `total` children that `_exit(0)` at once: fork and exit events
/// without the cost of an exec. The forking is done by `workers` fresh
/// copies of this binary (`xtask bench-fork N`): forking the bench itself,
/// large and multi-threaded, would measure page-table copies and mmap lock
/// contention instead. Returns the forks done and the wall time.
pub(crate) fn fork_storm(total: u64, workers: usize) -> Result<(u64, Duration)> {
    let exe = std::env::current_exe().context("locating the xtask binary")?;
    let per = total / workers as u64;
    let start = Instant::now();
    let children: Vec<_> = (0..workers)
        .map(|_| {
            Command::new(&exe)
                .args(["bench-fork", &per.to_string()])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .context("starting a fork storm worker")
        })
        .collect::<Result<_>>()?;
    let mut n = 0;
    for c in children {
        let out = c.wait_with_output().context("fork storm worker")?;
        if !out.status.success() {
            bail!("fork storm worker failed: {}", out.status);
        }
        n += String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u64>()
            .context("fork storm worker output")?;
    }
    Ok((n, start.elapsed()))
}

/// The body of `xtask bench-fork N`: N fork + `_exit`, reaped in batches
/// of 32 (waiting for each child alone would measure the scheduler's
/// wake-up latency, not event throughput), then prints the forks done.
pub(crate) fn fork_child(n: u64) -> Result<()> {
    const BATCH: u64 = 32;
    let mut ok = 0u64;
    let mut left = n;
    while left > 0 {
        let k = left.min(BATCH);
        let mut live = 0;
        for _ in 0..k {
            // SAFETY: single-threaded process; the child only calls _exit.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                // SAFETY: terminates the child without running destructors.
                unsafe { libc::_exit(0) };
            }
            if pid > 0 {
                live += 1;
            }
        }
        for _ in 0..live {
            let mut st = 0;
            // SAFETY: reaps any of our children; st is writable.
            unsafe { libc::waitpid(-1, &raw mut st, 0) };
        }
        ok += live;
        left -= k;
    }
    println!("{ok}");
    Ok(())
}

/// `strace -f -o /dev/null` of `dd` copying `bytes` one byte at a time:
/// two syscalls per byte, each stopping the tracee twice. Returns the wall
/// time and the syscalls/s it implies.
pub(crate) fn strace_loop(bytes: u64) -> Result<(Duration, f64)> {
    let start = Instant::now();
    let st = Command::new("strace")
        .args([
            "-f",
            "-o",
            "/dev/null",
            "dd",
            "if=/dev/zero",
            "of=/dev/null",
            "bs=1",
        ])
        .arg(format!("count={bytes}"))
        .stderr(std::process::Stdio::null())
        .status()
        .context("running strace (apt-get install strace)")?;
    let wall = start.elapsed();
    if !st.success() {
        bail!("strace workload failed: {st}");
    }
    Ok((wall, (2 * bytes) as f64 / wall.as_secs_f64()))
}

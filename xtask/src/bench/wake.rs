//! What one sleep and wake-up of a thread costs on this host, measured
//! with no agent running. The agent pays it twice per read while events
//! flow (its reading thread's timer, then its delivery thread), so this
//! is the floor under its fixed cost per read: on a virtual machine whose
//! idle vCPUs halt and take an IPI to wake, it is far above a syscall's.

use std::{sync::mpsc, time::Duration};

use anyhow::{Context as _, Result, bail};

/// Timer sleeps in the calibration (1 ms each).
const TIMER_WAKES: u32 = 1_000;
/// Round trips between two threads.
const ROUND_TRIPS: u32 = 5_000;

/// CPU time of the calling thread (utime + stime), ns.
fn thread_cpu_ns() -> Result<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer for the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        bail!(
            "clock_gettime(CLOCK_THREAD_CPUTIME_ID): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000
        + u64::try_from(ts.tv_nsec).unwrap_or(0))
}

pub(crate) struct WakeCost {
    /// CPU per 1 ms timer sleep of one thread (`epoll_wait` with a
    /// timeout and nothing to wait for: the reading thread while it polls).
    pub timer_us: f64,
    /// CPU of both threads per round trip, halved: one thread waking
    /// another that sleeps on a channel (the delivery thread's hand-off).
    pub hand_off_us: f64,
    /// CPU per call of a syscall that does nothing (`getppid`), for scale.
    pub syscall_us: f64,
}

impl std::fmt::Display for WakeCost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1} us / {:.1} us ({:.2} us)",
            self.timer_us, self.hand_off_us, self.syscall_us
        )
    }
}

pub(crate) fn measure() -> Result<WakeCost> {
    Ok(WakeCost {
        timer_us: timer_wake()?,
        hand_off_us: hand_off()?,
        syscall_us: syscall()?,
    })
}

fn timer_wake() -> Result<f64> {
    // SAFETY: plain syscalls on a descriptor this function owns.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        bail!("epoll_create1: {}", std::io::Error::last_os_error());
    }
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 1];
    let c0 = thread_cpu_ns()?;
    for _ in 0..TIMER_WAKES {
        // SAFETY: `evs` holds room for the one event asked for.
        unsafe { libc::epoll_wait(ep, evs.as_mut_ptr(), 1, 1) };
    }
    let cpu = thread_cpu_ns()? - c0;
    // SAFETY: closing the descriptor created above.
    unsafe { libc::close(ep) };
    Ok(cpu as f64 / 1e3 / f64::from(TIMER_WAKES))
}

fn hand_off() -> Result<f64> {
    let (to_peer, peer_rx) = mpsc::channel::<u32>();
    let (to_main, main_rx) = mpsc::channel::<u32>();
    let peer = std::thread::spawn(move || -> Result<u64> {
        let c0 = thread_cpu_ns()?;
        for v in peer_rx {
            if to_main.send(v).is_err() {
                break;
            }
        }
        Ok(thread_cpu_ns()? - c0)
    });
    // Let the peer reach its first wait.
    std::thread::sleep(Duration::from_millis(10));
    let c0 = thread_cpu_ns()?;
    for i in 0..ROUND_TRIPS {
        to_peer.send(i).context("the calibration peer stopped")?;
        main_rx.recv().context("the calibration peer stopped")?;
    }
    let main_cpu = thread_cpu_ns()? - c0;
    drop(to_peer);
    let peer_cpu = peer
        .join()
        .map_err(|_| anyhow::anyhow!("the calibration peer panicked"))??;
    Ok((main_cpu + peer_cpu) as f64 / 1e3 / f64::from(ROUND_TRIPS) / 2.0)
}

fn syscall() -> Result<f64> {
    const N: u32 = 100_000;
    let c0 = thread_cpu_ns()?;
    for _ in 0..N {
        // SAFETY: getppid has no preconditions.
        unsafe { libc::getppid() };
    }
    Ok((thread_cpu_ns()? - c0) as f64 / 1e3 / f64::from(N))
}

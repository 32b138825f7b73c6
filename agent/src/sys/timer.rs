//! A one-shot timer the kernel keeps (`timerfd`, `CLOCK_MONOTONIC`), for
//! the ring reads while events flow. tokio's timers count whole
//! milliseconds and round a deadline up (a 1 ms sleep fires after about
//! 2.1 ms), and re-arming one from the thread that runs the time driver
//! makes the driver wake its own thread through an eventfd before it
//! sleeps again. A timerfd fires when asked, to the microsecond, and is
//! one more descriptor in the epoll set the runtime already waits on.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    time::Duration,
};

/// A disarmed timer until [`Timer::arm`].
#[derive(Debug)]
pub struct Timer {
    fd: OwnedFd,
}

impl Timer {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor just created and owned by nobody else.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Fires once, `after` from now (at once for a zero duration). Arming
    /// again replaces the deadline and forgets an expiry not yet read.
    pub fn arm(&self, after: Duration) -> io::Result<()> {
        // A zero it_value would disarm: the earliest expiry is 1 ns.
        self.set(after.max(Duration::from_nanos(1)))
    }

    /// Never fires until armed again.
    pub fn disarm(&self) -> io::Result<()> {
        self.set(Duration::ZERO)
    }

    /// Consumes an expiry. `Ok(false)`: none was due (a deadline replaced
    /// after the descriptor became readable).
    pub fn expired(&self) -> io::Result<bool> {
        let mut n = 0u64;
        // SAFETY: reads 8 bytes into a u64 the call owns.
        let r = unsafe { libc::read(self.fd.as_raw_fd(), (&raw mut n).cast(), 8) };
        if r == 8 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => Ok(false),
            _ => Err(e),
        }
    }

    fn set(&self, value: Duration) -> io::Result<()> {
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: libc::time_t::try_from(value.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_nsec: libc::c_long::from(value.subsec_nanos()),
            },
        };
        // SAFETY: `spec` is a valid itimerspec; the old value is not asked for.
        let r =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl AsRawFd for Timer {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn wait_readable(t: &Timer, ms: i32) -> bool {
        let mut p = libc::pollfd {
            fd: t.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd the call owns.
        unsafe { libc::poll(&raw mut p, 1, ms) == 1 }
    }

    #[test]
    fn fires_once_after_the_time_asked() {
        let t = Timer::new().unwrap();
        assert!(!t.expired().unwrap(), "a new timer is disarmed");
        let start = Instant::now();
        t.arm(Duration::from_millis(3)).unwrap();
        assert!(wait_readable(&t, 1000));
        assert!(start.elapsed() >= Duration::from_millis(3));
        assert!(t.expired().unwrap());
        // One-shot: nothing more is due.
        assert!(!wait_readable(&t, 20));
        assert!(!t.expired().unwrap());
    }

    #[test]
    fn re_arming_or_disarming_forgets_an_expiry_not_read() {
        let t = Timer::new().unwrap();
        t.arm(Duration::ZERO).unwrap();
        assert!(wait_readable(&t, 1000), "a zero duration fires at once");
        t.arm(Duration::from_secs(60)).unwrap();
        assert!(!t.expired().unwrap());
        t.arm(Duration::ZERO).unwrap();
        assert!(wait_readable(&t, 1000));
        t.disarm().unwrap();
        assert!(!t.expired().unwrap());
        assert!(!wait_readable(&t, 20));
    }
}

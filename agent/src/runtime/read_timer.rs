//! The timer of the reads while events flow: [`super::reader`]'s deadlines
//! on a kernel timer ([`crate::sys::timer`]) in the runtime's epoll set,
//! so that a read comes when it is due, not at the next whole millisecond
//! after it, and arming it costs one syscall, not a wake-up of the
//! runtime's own thread.

use std::io;

use tokio::{
    io::{Interest, unix::AsyncFd},
    time::Instant,
};

use crate::sys::timer::Timer;

pub(super) struct ReadTimer {
    fd: AsyncFd<Timer>,
    /// The deadline the kernel holds; `None`: disarmed or spent.
    armed: Option<Instant>,
}

impl ReadTimer {
    pub(super) fn new() -> io::Result<Self> {
        // SAFETY: the Timer owns its descriptor, which stays open and
        // unchanged for as long as the Timer lives inside the AsyncFd.
        let fd = unsafe { AsyncFd::register_with_interest(Timer::new()?, Interest::READABLE) }?;
        Ok(Self { fd, armed: None })
    }

    /// Points the timer at `deadline` (`None`: no timed read), telling the
    /// kernel only when that changes.
    pub(super) fn set(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        if deadline == self.armed {
            return Ok(());
        }
        match deadline {
            Some(d) => self
                .fd
                .get_ref()
                .arm(d.saturating_duration_since(Instant::now()))?,
            None => self.fd.get_ref().disarm()?,
        }
        self.armed = deadline;
        Ok(())
    }

    /// Returns once the armed deadline has passed. Cancel-safe: the expiry
    /// is consumed only by the call that returns.
    pub(super) async fn fired(&mut self) -> io::Result<()> {
        loop {
            let mut guard = self.fd.readable().await?;
            // Cleared before the read: an expiry after it raises readiness
            // again, one before it is consumed by the read.
            guard.clear_ready();
            if self.fd.get_ref().expired()? {
                self.armed = None;
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn fires_at_the_deadline_and_not_when_disarmed() {
        let mut t = ReadTimer::new().unwrap();
        let start = Instant::now();
        t.set(Some(start + Duration::from_millis(3))).unwrap();
        t.fired().await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(3));
        // Spent: the same deadline set again arms the kernel again.
        t.set(Some(start + Duration::from_millis(3))).unwrap();
        tokio::time::timeout(Duration::from_secs(5), t.fired())
            .await
            .expect("a past deadline fires at once")
            .unwrap();
        t.set(None).unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(30), t.fired())
                .await
                .is_err(),
            "a disarmed timer never fires"
        );
    }

    #[tokio::test]
    async fn a_deadline_moved_later_is_waited_for() {
        let mut t = ReadTimer::new().unwrap();
        t.set(Some(Instant::now())).unwrap();
        // Let the first deadline pass unread, then move it.
        std::thread::sleep(Duration::from_millis(2));
        let later = Instant::now() + Duration::from_millis(20);
        t.set(Some(later)).unwrap();
        t.fired().await.unwrap();
        assert!(Instant::now() >= later, "the replaced expiry did not count");
    }
}

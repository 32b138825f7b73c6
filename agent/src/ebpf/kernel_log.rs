//! The kernel programs' own log (`--kernel-log`, config
//! `agent.kernel_log`): at each counted failure site the programs write a
//! line through aya-log (which site, which thread, the helper's error
//! code), and the agent forwards it to its log at WARN, target
//! `debugmon::kernel`. Off by default: the programs are then loaded with
//! aya-log's level global at 0, and the verifier removes the logging code.

use std::panic::{AssertUnwindSafe, catch_unwind};

use aya::Ebpf;
use aya_log::EbpfLogger;
use tokio::{
    io::{Interest, unix::AsyncFd},
    task::JoinHandle,
};

/// aya-log's level global for the programs: warnings (every fault line is
/// one) when asked for, else 0, below every level.
pub fn level(enabled: bool) -> u8 {
    if enabled {
        aya_log::Level::Warn as u8
    } else {
        0
    }
}

/// Forwards aya-log records to the agent's `tracing` log.
pub struct ToTracing;

impl log::Log for ToTracing {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        tracing::warn!(target: "debugmon::kernel", "{}", record.args());
    }

    fn flush(&self) {}
}

pub type Logger = EbpfLogger<ToTracing>;

/// Takes the programs' log ring from a loaded object.
pub fn take(ebpf: &mut Ebpf) -> Result<Logger, aya_log::Error> {
    EbpfLogger::init_with_logger(ebpf, ToTracing)
}

/// Reads the log ring while the returned task runs (it ends when dropped
/// with [`Reading`]).
pub struct Reading(JoinHandle<()>);

impl Drop for Reading {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts forwarding: each time the ring has data, every line in it goes to
/// the log. aya-log panics on a line it cannot parse; that stops the kernel
/// log (said in the agent's log), never the agent.
pub fn spawn(logger: Logger) -> std::io::Result<Reading> {
    // SAFETY: the logger owns its ring's map fd, which stays open and
    // unchanged for as long as the logger lives inside the AsyncFd.
    let mut fd = unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) }?;
    Ok(Reading(tokio::spawn(async move {
        loop {
            let mut guard = match fd.readable_mut().await {
                Ok(g) => g,
                Err(e) => {
                    tracing::error!(error = %e, "kernel log: waiting on the ring failed; kernel log off");
                    return;
                }
            };
            let flushed = catch_unwind(AssertUnwindSafe(|| guard.get_inner_mut().flush()));
            guard.clear_ready();
            if flushed.is_err() {
                tracing::error!("kernel log: a line could not be parsed; kernel log off");
                return;
            }
        }
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_is_below_every_level() {
        assert_eq!(level(false), 0);
        assert!(level(true) >= aya_log::Level::Error as u8);
        assert!(level(true) < aya_log::Level::Info as u8);
    }
}

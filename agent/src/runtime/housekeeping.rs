//! The agent's periodic work beside the ring: once a second (lost counts,
//! reaping, the kill fallback's stopped targets, grants, policy reloads,
//! the heartbeat when it is due, metrics and the systemd status line),
//! once per aggregate window (repeated accesses), and on SIGHUP (reload
//! now).

use tracing::info;

use super::{AgentError, running::Running};
use crate::{
    event::Kind,
    metrics::NatsTotals,
    record::LostCounts,
    sys::host::{self, Clock},
};

/// After the kill fallback removed a tracer, its tracee may be left in a
/// stopped state (an attach delivers SIGSTOP): continue it, so enforcement
/// never leaves a protected service frozen.
fn resume_stopped(pids: Vec<u32>) {
    for pid in pids {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let stopped = status.lines().any(|l| {
            l.starts_with("State:") && (l.contains("(stopped)") || l.contains("(tracing stop)"))
        });
        let traced = status
            .lines()
            .any(|l| l.starts_with("TracerPid:") && l.split_whitespace().nth(1) != Some("0"));
        if stopped && !traced {
            // SAFETY: plain syscall; the pid was read from /proc just now.
            let rc = unsafe { libc::kill(pid as i32, libc::SIGCONT) };
            info!(pid, rc, "resumed a process its killed tracer left stopped");
        }
    }
}

impl Running {
    /// The kernel's drop counters and the spool's shed records.
    pub(super) fn lost_now(&self) -> LostCounts {
        LostCounts {
            spool_shed: self.sink.spool_shed(),
            ..self.kernel.lost()
        }
    }

    pub(super) async fn on_tick(&mut self) -> Result<(), AgentError> {
        // Also drain here: a missed wakeup can delay records by at most one
        // tick, never strand them. While waiting, set the flag again first:
        // an event that cleared it but found the ring full woke nobody, and
        // would leave every later record to this tick.
        if self.reader.waits_for_wake() {
            self.sleep_on_wake()?;
        }
        self.drain().await?;
        self.p.set_clock(Clock::sample());
        let now = host::boottime_ns();
        let lost = self.lost_now();
        self.p.report_lost(now, lost);
        self.p.reap(now);
        resume_stopped(self.p.take_resume());
        let effects = self.gov.poll_grants();
        self.p.apply(effects);
        for g in self.p.take_grant_uses() {
            let used = self.gov.note_use(&g);
            self.p.apply(used.into_iter().collect());
        }
        let effects = self.gov.poll_reload();
        self.p.apply(effects);
        let effects = self.gov.poll_users();
        self.p.apply(effects);
        let effects = self.gov.poll_programs();
        self.p.apply(effects);
        self.heartbeat(now, lost);
        self.sink.send(self.p.take_batch()).await?;
        self.publish(lost);
        Ok(())
    }

    /// A heartbeat record, when one is due. It goes out with this tick's
    /// other records, through the delivery stage that seals them all.
    fn heartbeat(&mut self, now: u64, lost: LostCounts) {
        let Some(cadence) = self.heartbeat.as_mut() else {
            return;
        };
        if cadence.due(now) {
            let detail = cadence.detail(now, &self.p.stats(), lost);
            self.p.note(now, Kind::Agent, detail);
            self.metrics.heartbeat_written();
        }
    }

    pub(super) async fn on_hangup(&mut self) -> Result<(), AgentError> {
        info!("SIGHUP received: reloading the policy");
        let effects = self.gov.reload_now();
        self.p.apply(effects);
        self.sink.send(self.p.take_batch()).await?;
        Ok(())
    }

    /// The aggregate window closed: report accesses repeated in it.
    pub(super) async fn on_window(&mut self) -> Result<(), AgentError> {
        self.drain().await?;
        self.report_aggregates();
        self.sink.send(self.p.take_batch()).await?;
        Ok(())
    }

    pub(super) fn report_aggregates(&mut self) {
        let window = self.timers.window_len.as_secs();
        self.p
            .report_aggregates(host::boottime_ns(), window, self.kernel.aggregates());
    }

    /// Copies the once-a-second numbers into the metrics registry and tells
    /// systemd a one-line summary (`systemctl status` shows it).
    fn publish(&mut self, lost: LostCounts) {
        let stats = self.p.stats();
        self.metrics
            .set_kernel_lost([lost.exec, lost.fork, lost.exit, lost.access]);
        self.metrics.set_undecodable(stats.undecodable);
        self.metrics.set_process_table(self.p.table().len() as u64);
        self.metrics.set_kernel_faults(self.kernel.faults());
        let d = self.sink.stats();
        self.metrics
            .set_spool(d.spool_pending, d.spool_bytes, d.spool_shed);
        if let Some(n) = self.sink.nats_stats() {
            self.metrics.set_nats(NatsTotals {
                connected: n.connected,
                acked: n.acked,
                errors: n.errors,
                batches: n.batches,
                ack_latency_total_us: n.ack_latency_total_us,
            });
        }
        if self.notifier.is_enabled() {
            let rate = stats.events.saturating_sub(self.last_events);
            self.notifier.status(&format!(
                "{} programs attached; {rate} events/s; {} records; {} lost",
                self.programs,
                stats.records,
                lost.total() + stats.undecodable
            ));
        }
        self.last_events = stats.events;
    }
}

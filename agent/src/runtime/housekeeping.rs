//! The agent's periodic work beside the ring: once a second (lost counts,
//! reaping, the kill fallback's stopped targets, grants, policy reloads,
//! the heartbeat and the inventory when they are due, metrics and the
//! systemd status line),
//! once per aggregate window (repeated accesses), and on SIGHUP (reload
//! now).

use tracing::info;

use super::{AgentError, running::Running};
use crate::{
    decide::Verdict,
    event::Kind,
    inventory,
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
        // Records the polls above wrote (a grant created or expired) carry
        // their own time: what follows is stamped after them, so the
        // stream's time never goes back.
        let now = host::boottime_ns();
        self.heartbeat(now, lost);
        self.checkpoint();
        if self.inventory.as_mut().is_some_and(|c| c.due(now)) {
            self.take_inventory(now);
        }
        self.report_collisions(now);
        self.sink.send(self.p.take_records()).await?;
        self.publish(lost);
        Ok(())
    }

    /// A signed `checkpoint` record when the last record released has
    /// waited for a signature longer than [`crate::sink::SIGN_INTERVAL`]: the stream
    /// paused right after a burst whose last group went unsigned. Through
    /// the chain it proves every record since the last signature. On a
    /// quiet host, and under steady load, groups are signed themselves and
    /// this never fires.
    fn checkpoint(&mut self) {
        // Read now, not at the tick's start: records written since then
        // (a grant created meanwhile) must not come after it in time.
        let now = host::boottime_ns();
        if let Some(since) = self.sink.unsigned_tip_since(now) {
            self.p
                .note(now, Kind::Agent, super::heartbeat::checkpoint_detail(since));
        }
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

    /// The host's debug exposure as `inventory` records. Reading /proc
    /// takes a few milliseconds per thousand processes, once an interval.
    pub(super) fn take_inventory(&mut self, now: u64) {
        let path = std::env::var("PATH").ok();
        let src = inventory::Sources::host(path.as_deref());
        let inv = inventory::collect(&src, self.p.decider_mut().set());
        if inv.skipped > 0 {
            info!(
                skipped = inv.skipped,
                "inventory: processes exited or files could not be read"
            );
        }
        self.p.report_inventory(now, &inv);
    }

    /// Records NATS published again because another publisher had taken
    /// their message id: nothing was lost, but someone with publish rights
    /// on the stream is interfering, which security must hear about.
    fn report_collisions(&mut self, now: u64) {
        let Some(stats) = self.sink.nats_stats() else {
            return;
        };
        let new = stats.collisions.saturating_sub(self.collisions_reported);
        if new == 0 {
            return;
        }
        self.collisions_reported = stats.collisions;
        let verdict = Verdict {
            action: "alert",
            enforced: None,
            grant_id: None,
            reason: Some(format!(
                "{new} records found their NATS message id already taken by another publisher; each was published again under a fresh id"
            )),
            rule: Some("nats-msg-id-collision".to_owned()),
            severity: Some("high".to_owned()),
            tags: Vec::new(),
        };
        self.p.note_alert(
            now,
            serde_json::json!({
                "event": "delivery_collision",
                "collisions": new,
                "cumulative": stats.collisions,
            }),
            &verdict,
        );
    }

    pub(super) async fn on_hangup(&mut self) -> Result<(), AgentError> {
        info!("SIGHUP received: reloading the configuration and the policy");
        if let Some(r) = &self.reload {
            // A panic elsewhere while holding the lock cannot leave the
            // reloader half-updated: it changes its state only on success.
            let result = match r.lock() {
                Ok(mut g) => g.reload_config(),
                Err(poisoned) => poisoned.into_inner().reload_config(),
            };
            match result {
                Ok(done) => {
                    if let Some(dirs) = done.policy_dirs {
                        info!(?dirs, "policy directories changed");
                        self.gov.set_policy_dirs(dirs);
                    }
                    if !done.needs_restart.is_empty() {
                        tracing::warn!(
                            "configuration changed in [{}]: takes effect on the next restart \
                             (systemctl restart debugmon)",
                            done.needs_restart.join("], [")
                        );
                    }
                }
                // The policy is still reloaded from the directories in use:
                // a policy edit should not wait for a config fix.
                Err(e) => tracing::error!(
                    "configuration reload rejected, the running configuration stays:\n{e}"
                ),
            }
        }
        let effects = self.gov.reload_now();
        self.p.apply(effects);
        self.sink.send(self.p.take_records()).await?;
        Ok(())
    }

    /// The aggregate window closed: report accesses repeated in it.
    pub(super) async fn on_window(&mut self) -> Result<(), AgentError> {
        self.drain().await?;
        self.report_aggregates();
        self.sink.send(self.p.take_records()).await?;
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
        self.metrics
            .set_spool_lost([d.spool_shed, d.spool_unwritable, d.spool_torn]);
        if let Some(n) = self.sink.nats_stats() {
            self.metrics.set_nats(NatsTotals {
                connected: n.connected,
                acked: n.acked,
                errors: n.errors,
                collisions: n.collisions,
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

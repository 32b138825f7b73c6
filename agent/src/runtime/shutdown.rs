//! Stopping: tell systemd, stop serving the control socket, drain what the
//! kernel already queued, write the last aggregates, lost counts and the
//! `stopped` record, detach every program, then flush the sinks. Nothing
//! the kernel handed over before the detach is lost.

use serde_json::json;
use tracing::info;

use super::{AgentError, RunSummary, running::Running};
use crate::{event::Kind, sys::host};

impl Running {
    pub(super) async fn stop(mut self) -> Result<RunSummary, AgentError> {
        self.notifier.stopping();
        let _ = self.stop_control.send(true);
        info!("stopping: draining the ring buffer");
        while !self.drain().await? {}
        self.report_aggregates();
        let lost = self.lost_now();
        let now = host::boottime_ns();
        self.p.report_lost(now, lost);
        let stats = self.p.stats();
        self.p.note(
            now,
            Kind::Agent,
            json!({
                "event": "stopped",
                "events": stats.events,
                "records": stats.records + 1,
                "lost": {
                    "exec": lost.exec,
                    "fork": lost.fork,
                    "exit": lost.exit,
                    "access": lost.access,
                    "undecodable": stats.undecodable,
                    "spool_shed": lost.spool_shed,
                },
            }),
        );
        self.sink.send(self.p.take_records()).await?;
        // Detach before the final flush: nothing new can arrive after this.
        let Running {
            ring, kernel, sink, ..
        } = self;
        drop(ring);
        drop(kernel);
        let bytes = sink.close().await?;
        info!(records = stats.records + 1, bytes, "stopped");
        Ok(RunSummary { stats, lost })
    }
}

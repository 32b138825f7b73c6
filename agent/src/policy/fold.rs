//! Alert folding: a debugger stepping through a process raises the same
//! alert thousands of times. The first alert of a kind is emitted at once;
//! identical ones (same rule, actor exe and uid, target) within the window
//! are only counted, and one summary with the count is emitted when the
//! window closes. Time is passed in so tests control it.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use super::{engine::Ruling, event::PolicyEvent};

/// What makes two alerts "the same". The target is identified by unit, exe
/// and comm rather than pid so that attaching to each worker of a service
/// folds into one alert.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FoldKey {
    pub rule: String,
    pub actor_exe: Option<String>,
    pub actor_uid: Option<u32>,
    pub target_unit: Option<String>,
    pub target_exe: Option<String>,
    pub target_comm: Option<String>,
}

impl FoldKey {
    pub fn new(ev: &PolicyEvent, d: &Ruling<'_>) -> Self {
        let t = ev.target.as_ref();
        Self {
            rule: d.rule.unwrap_or_default().to_owned(),
            actor_exe: ev.actor.exe.clone(),
            actor_uid: ev.actor.uid,
            target_unit: t.and_then(|t| t.unit.clone()),
            target_exe: t.and_then(|t| t.exe.clone()),
            target_comm: t.and_then(|t| t.comm.clone()),
        }
    }
}

/// A closed window in which more alerts than the first were folded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folded {
    pub key: FoldKey,
    /// Alerts seen in the window, the emitted first one included.
    pub count: u64,
    pub first: Instant,
    pub last: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoldOutcome {
    /// First of its kind in the window: emit the alert.
    Emit,
    /// Counted into the open window; emit nothing now.
    Folded,
}

struct Window {
    first: Instant,
    last: Instant,
    count: u64,
}

pub struct AlertFolder {
    window: Duration,
    open: HashMap<FoldKey, Window>,
}

impl AlertFolder {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            open: HashMap::new(),
        }
    }

    /// Counts an alert seen at `now`.
    pub fn offer(&mut self, key: FoldKey, now: Instant) -> FoldOutcome {
        match self.open.get_mut(&key) {
            Some(w) if now.saturating_duration_since(w.first) < self.window => {
                w.count += 1;
                w.last = now;
                FoldOutcome::Folded
            }
            // A window that has closed but not been flushed yet is replaced;
            // `flush` before `offer` to get its summary.
            _ => {
                self.open.insert(
                    key,
                    Window {
                        first: now,
                        last: now,
                        count: 1,
                    },
                );
                FoldOutcome::Emit
            }
        }
    }

    /// Closes the windows that ended by `now`; returns those that folded
    /// anything (a lone alert was already emitted, so it needs no summary).
    pub fn flush(&mut self, now: Instant) -> Vec<Folded> {
        let mut out = Vec::new();
        self.open.retain(|key, w| {
            if now.saturating_duration_since(w.first) < self.window {
                return true;
            }
            if w.count > 1 {
                out.push(Folded {
                    key: key.clone(),
                    count: w.count,
                    first: w.first,
                    last: w.last,
                });
            }
            false
        });
        out.sort_by_key(|f| f.first);
        out
    }

    /// Windows still open (for metrics).
    pub fn open_windows(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(rule: &str, uid: u32) -> FoldKey {
        FoldKey {
            rule: rule.into(),
            actor_exe: Some("/usr/bin/gdb".into()),
            actor_uid: Some(uid),
            target_unit: Some("postgresql.service".into()),
            target_exe: None,
            target_comm: Some("postgres".into()),
        }
    }

    #[test]
    fn identical_alerts_fold_within_the_window() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut f = AlertFolder::new(Duration::from_secs(60));
        assert_eq!(f.offer(key("r", 1), t0), FoldOutcome::Emit);
        assert_eq!(f.offer(key("r", 1), t0 + s), FoldOutcome::Folded);
        assert_eq!(f.offer(key("r", 1), t0 + 2 * s), FoldOutcome::Folded);
        // Another uid or rule is another alert.
        assert_eq!(f.offer(key("r", 2), t0 + s), FoldOutcome::Emit);
        assert_eq!(f.offer(key("q", 1), t0 + s), FoldOutcome::Emit);
        assert!(f.flush(t0 + 59 * s).is_empty(), "windows still open");
        let done = f.flush(t0 + 60 * s);
        assert_eq!(done.len(), 1, "only the window that folded something");
        assert_eq!(done[0].key, key("r", 1));
        assert_eq!(done[0].count, 3);
        assert_eq!(done[0].last, t0 + 2 * s);
        assert_eq!(f.open_windows(), 2, "the windows opened a second later");
        assert!(
            f.flush(t0 + 61 * s).is_empty(),
            "lone alerts need no summary"
        );
        assert_eq!(f.open_windows(), 0);
        assert_eq!(f.offer(key("r", 1), t0 + 61 * s), FoldOutcome::Emit);
    }
}

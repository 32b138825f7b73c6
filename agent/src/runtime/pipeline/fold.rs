//! Routine opens folded: `ps aux` opens the environment of every process,
//! `top` does it again every few seconds. An open of another process's
//! `mem` or `environ` that no rule alerts on is recorded once per actor
//! and kind; the ones after it, until the aggregate window closes, become
//! one aggregate record with their count and (the first few of) their
//! targets. Alerts and denials are never folded.

use std::collections::HashMap;

use crate::{decide::Verdict, event::AccessInfo};

/// Targets listed on one aggregate (the count has them all).
pub(super) const MAX_TARGETS: usize = 16;

/// Actor process (tgid, start time), `via`, and whether for writing (a
/// write open is folded apart from reads).
type Key = (u32, u64, &'static str, bool);

struct Folded {
    /// The actor's latest open, for its facts.
    last: AccessInfo,
    count: u64,
    targets: Vec<u32>,
    /// Windows in a row with nothing folded: the key goes after two.
    idle: u8,
}

#[derive(Default)]
pub(super) struct OpenFolder {
    open: HashMap<Key, Folded>,
}

/// One aggregate to record: a template open with its count, and targets.
pub(super) struct Aggregate {
    pub(super) access: AccessInfo,
    pub(super) targets: Vec<u32>,
}

impl OpenFolder {
    /// Whether the open `a` (via `via`, decided `verdict`, of `target`)
    /// is recorded now; false when it was folded.
    pub(super) fn offer(
        &mut self,
        a: &AccessInfo,
        via: Option<&'static str>,
        verdict: Option<&Verdict>,
        target: Option<u32>,
    ) -> bool {
        let routine = verdict.is_none_or(|v| v.action == "allow");
        let Some(via @ ("proc_mem" | "proc_environ")) = via else {
            return true;
        };
        if a.aggregate || !routine {
            return true;
        }
        // O_WRONLY or O_RDWR.
        let key = (a.tgid, a.start_ns, via, a.request & 3 != 0);
        match self.open.get_mut(&key) {
            None => {
                self.open.insert(
                    key,
                    Folded {
                        last: a.clone(),
                        count: 0,
                        targets: Vec::new(),
                        idle: 0,
                    },
                );
                true
            }
            Some(f) => {
                f.count += 1;
                f.last = a.clone();
                if let Some(t) = target
                    && f.targets.len() < MAX_TARGETS
                    && !f.targets.contains(&t)
                {
                    f.targets.push(t);
                }
                false
            }
        }
    }

    /// The aggregates of the window that closed; keys idle for two
    /// windows are forgotten (their actor's next open is recorded again).
    pub(super) fn drain(&mut self) -> Vec<Aggregate> {
        let mut out = Vec::new();
        self.open.retain(|_, f| {
            if f.count == 0 {
                f.idle += 1;
                return f.idle < 2;
            }
            let mut access = f.last.clone();
            access.count = f.count;
            access.aggregate = true;
            access.target_pid = 0;
            access.target_host_pid = None;
            out.push(Aggregate {
                access,
                targets: std::mem::take(&mut f.targets),
            });
            f.count = 0;
            f.idle = 0;
            true
        });
        out
    }
}
